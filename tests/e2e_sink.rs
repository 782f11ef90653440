//! The sink against real Kafka and OpenSearch: a batch holding one alert the index refuses for its content (a
//! source IP that is not an address, against the shipped mapping) — that alert goes to the dead-letter topic with
//! the reason, the rest of its batch is indexed, and each alert is on the alerts topic once.

mod common;

use std::time::Duration;

use palisade_schemas::{Alert, Codec};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

fn alert(id: &str, source_ip: &str) -> Alert {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/alert.v2.json")).unwrap();
    let mut alert: Alert = serde_json::from_str(&text).unwrap();
    alert.id = id.to_owned();
    alert.source_ip = Some(source_ip.to_owned());
    alert.timestamp_ms = 1_764_000_000_000;
    alert
}

#[test]
fn a_document_rejected_for_its_mapping_is_dead_lettered_and_the_rest_of_its_batch_is_indexed() {
    let mut stack = common::Stack::new("sink");
    stack.set("PALISADE__SINK__OPENSEARCH__BATCH_MAX_WAIT_MS", "2000");
    stack.start(&["sink"]);

    let ids: Vec<String> = (0..5).map(|n| format!("{}-{n}", stack.run)).collect();
    let codec = Codec::<Alert>::new().unwrap();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    for (index, id) in ids.iter().enumerate() {
        let ip = if index == 2 { "not-an-ip" } else { "192.0.2.10" };
        let payload = codec.encode(&alert(id, ip)).unwrap();
        producer.send(BaseRecord::to(&stack.topic("enriched")).key(id.as_str()).payload(&payload)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    // The dead-letter topic holds the refused alert, with the reason.
    let dead = common::read_dead_letters(&stack.topic("dead_letter"), 1, Duration::from_secs(60));
    let (payload, reason) =
        dead.into_iter().next().unwrap_or_else(|| panic!("nothing dead-lettered\nsink log:\n{}", stack.log("sink")));
    let dead_id = codec.decode(&payload).unwrap().id;
    assert_eq!(dead_id, ids[2]);
    assert!(reason.contains("mapper_parsing_exception") || reason.contains("HTTP 400"), "{reason}");

    // The other four are indexed, once each; all five are on the alerts topic.
    let filter = json!({"terms": {"event.id": ids}});
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while common::count_documents(&stack.index_prefix, filter.clone()) < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = reqwest::blocking::Client::new()
        .post(format!("{}/{}-*/_refresh", common::env("PALISADE_TEST_OPENSEARCH"), stack.index_prefix))
        .send();
    assert_eq!(common::count_documents(&stack.index_prefix, filter), 4);
    let on_topic = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(20), |seen| seen.len() >= 5);
    let mut topic_ids: Vec<String> = on_topic.iter().filter_map(|a| a["id"].as_str().map(str::to_owned)).collect();
    topic_ids.sort();
    assert_eq!(topic_ids, ids);
}
