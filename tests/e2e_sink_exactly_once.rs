//! Exactly once on the alerts topic: `palisade sink` is SIGKILLed in the middle of a stream of 10 000 alerts and
//! restarted. A `read_committed` reader of the alerts topic sees every alert exactly once, so does a reader of the
//! OCSF topic written in the same transactions (each as one Detection Finding), and the index holds exactly
//! 10 000 documents. Real Kafka (transactions) and real OpenSearch.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use palisade_schemas::{Alert, Codec};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

const ALERTS: usize = 10_000;

#[test]
fn a_sink_killed_mid_stream_loses_and_duplicates_nothing() {
    let mut stack = common::Stack::new("exactly-once");
    stack.set("PALISADE__SINK__OPENSEARCH__BATCH_MAX_ALERTS", "200");
    let ocsf_topic = stack.topic("alerts_ocsf");
    stack.set("PALISADE__SINK__OCSF_TOPIC", &ocsf_topic);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/alert.v2.json")).unwrap();
    let template: Alert = serde_json::from_str(&text).unwrap();
    let codec = Codec::<Alert>::new().unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "100000")
        .create()
        .unwrap();
    let enriched = stack.topic("enriched");
    for index in 0..ALERTS {
        let mut alert = template.clone();
        alert.id = format!("{}-{index:05}", stack.run);
        alert.namespace = Some(format!("eo-{}", stack.run.to_lowercase()));
        let payload = codec.encode(&alert).unwrap();
        while producer.send(BaseRecord::to(&enriched).key(&alert.id).payload(&payload)).is_err() {
            producer.poll(Duration::from_millis(20));
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    stack.start(&["sink"]);
    // Kill once part of the stream is committed, while the rest is still flowing.
    let alerts_topic = stack.topic("alerts");
    let partial = common::collect_alerts(&alerts_topic, Duration::from_secs(60), |seen| seen.len() >= 1500);
    assert!(partial.len() >= 1500, "the sink wrote too little before the kill:\n{}", stack.log("sink"));
    stack.kill("sink");
    assert!(partial.len() < ALERTS, "the stream finished before the kill; the test proves nothing");
    eprintln!("killed the sink after {} committed alerts", partial.len());

    stack.start(&["sink"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut all = Vec::new();
    while Instant::now() < deadline {
        all = common::collect_alerts(&alerts_topic, Duration::from_secs(20), |seen| seen.len() >= ALERTS);
        if all.len() >= ALERTS {
            break;
        }
    }
    // Anything more would arrive now: read once more, a little longer, with a fresh reader.
    std::thread::sleep(Duration::from_secs(3));
    let all_again = common::collect_alerts(&alerts_topic, Duration::from_secs(15), |seen| seen.len() > ALERTS);
    let ids: BTreeSet<String> = all_again.iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), ALERTS, "every alert on the topic (first read {}):\n{}", all.len(), stack.log("sink"));
    assert_eq!(all_again.len(), ALERTS, "no alert twice for a read_committed reader");
    let findings = common::collect_alerts(&ocsf_topic, Duration::from_secs(15), |seen| seen.len() > ALERTS);
    let finding_ids: BTreeSet<String> =
        findings.iter().map(|f| f["finding_info"]["uid"].as_str().unwrap().to_owned()).collect();
    assert_eq!(finding_ids, ids, "the OCSF topic holds the same alerts");
    assert_eq!(findings.len(), ALERTS, "each once");
    assert!(findings.iter().all(|f| f["class_uid"] == 2004 && f["metadata"]["version"] == "1.4.0"));

    let namespace = format!("eo-{}", stack.run.to_lowercase());
    let query = json!({"term": {"orchestrator.namespace": namespace}});
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut documents = 0;
    while Instant::now() < deadline {
        documents = common::count_documents(&stack.index_prefix, query.clone());
        if documents >= ALERTS as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(documents, ALERTS as u64, "the index holds each alert once");
}
