//! The sink acknowledges a batch only once all of it is written: an undecodable record behind a good one must not
//! commit the consumer group past the good one while the index is unreachable. Real Kafka, the sink without
//! transactions (where its own acknowledgements are the commits), a real OpenSearch node stopped, then back.

mod common;

use std::time::{Duration, Instant};

use palisade_schemas::{Alert, Codec};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

fn testbed(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed");
    let status = std::process::Command::new(script).args(args).status().unwrap();
    assert!(status.success(), "scripts/testbed {args:?}");
}

/// Starts OpenSearch again when the test ends, whether it passed or not: the next tests need it.
struct IndexBack;

impl Drop for IndexBack {
    fn drop(&mut self) {
        testbed(&["up", "opensearch"]);
    }
}

/// The offset the sink's group has committed on partition 0 of `topic`, if any.
fn committed(group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", group)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(topic, 0);
    let offsets = consumer.committed_offsets(partitions, Duration::from_secs(10)).unwrap();
    match offsets.find_partition(topic, 0)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

#[test]
fn an_undecodable_record_does_not_commit_past_an_unwritten_alert() {
    let mut stack = common::Stack::new("ackorder");
    stack.set("PALISADE__KAFKA__TOPIC_PARTITIONS", "1");
    stack.set("PALISADE__SINK__EXACTLY_ONCE", "false");
    // A batch waits long enough for both records, which are produced together.
    stack.set("PALISADE__SINK__OPENSEARCH__BATCH_MAX_WAIT_MS", "3000");
    stack.start(&["sink"]);
    testbed(&["down", "opensearch"]);
    let index_back = IndexBack;
    let enriched = stack.topic("enriched");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/alert.v2.json")).unwrap();
    let mut alert: Alert = serde_json::from_str(&text).unwrap();
    alert.id = format!("{}-good", stack.run);
    alert.namespace = Some(format!("ackorder-{}", stack.run.to_lowercase()));
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let payload = Codec::<Alert>::new().unwrap().encode(&alert).unwrap();
    producer.send(BaseRecord::to(&enriched).partition(0).key(&alert.id).payload(&payload)).map_err(|(e, _)| e).unwrap();
    producer
        .send(BaseRecord::to(&enriched).partition(0).key("bad").payload(&b"not an alert"[..]))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    let dead = common::read_dead_letters(&stack.topic("dead_letter"), 1, Duration::from_secs(60));
    assert_eq!(dead.len(), 1, "the undecodable record is dead-lettered:\n{}", stack.log("sink"));
    assert_eq!(dead[0].0, b"not an alert");
    // The index has its own loop and consumer group (the alerts topic, written, may commit). Offsets are
    // committed every second: give several commits the chance to go wrong.
    let group = format!("palisade-{}-sink-index", stack.run);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(committed(&group, &enriched), None, "committed past the unwritten alert:\n{}", stack.log("sink"));
        std::thread::sleep(Duration::from_millis(500));
    }
    stack.kill("sink");

    // Index back: the alert is read again and written.
    drop(index_back);
    stack.spawn(&["sink"]);
    let found =
        common::wait_for_document(&stack.index_prefix, json!({"term": {"_id": alert.id}}), Duration::from_secs(60));
    assert!(found.is_some(), "the alert behind the bad record was not lost:\n{}", stack.log("sink"));
}
