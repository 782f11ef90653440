//! Deduplication over real Kafka and OpenSearch: a burst of 1000 identical detections within 10 s becomes one
//! alert document with count 1000, through `palisade enrich` and `palisade sink`.

mod common;

use std::time::Duration;

use palisade_schemas::{Codec, Detection};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

#[test]
fn a_burst_of_1000_identical_detections_is_one_alert_with_count_1000() {
    let mut stack = common::Stack::new("dedup");
    stack.set("PALISADE__ENRICH__DEDUP_FLUSH_SECS", "1");
    stack.start(&["enrich", "sink"]);

    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/detection.v1.json")).unwrap();
    let template: Detection = serde_json::from_str(&text).unwrap();
    let namespace = format!("dedup-{}", stack.run.to_lowercase());
    let codec = Codec::<Detection>::new().unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let start_ms = 1_764_000_000_000i64;
    for index in 0..1000i64 {
        let mut detection = template.clone();
        detection.alert_type = "K8S_DeleteEvents".into();
        detection.namespace = Some(namespace.clone());
        detection.id = format!("{namespace}-{index}");
        detection.timestamp_ms = start_ms + index * 10; // 1000 events in 10 s
        let payload = codec.encode(&detection).unwrap();
        loop {
            match producer.send(BaseRecord::to(&stack.topic("detections")).key("k").payload(&payload)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let filter = json!({"bool": {"filter": [{"term": {"rule.id": "K8S_DeleteEvents"}}, {"term": {"orchestrator.namespace": namespace}}]}});
    let search = format!("{}/{}-*/_search", common::env("PALISADE_TEST_OPENSEARCH"), stack.index_prefix);
    let client = reqwest::blocking::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = json!(null);
    while std::time::Instant::now() < deadline {
        if let Ok(response) = client.post(&search).json(&json!({"query": filter})).send()
            && let Ok(body) = response.json::<serde_json::Value>()
        {
            last = body;
            if last.pointer("/hits/hits/0/_source/palisade/count") == Some(&json!(1000)) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        last.pointer("/hits/total/value"),
        Some(&json!(1)),
        "one document: {last}\nenrich log:\n{}",
        stack.log("enrich")
    );
    let document = &last["hits"]["hits"][0]["_source"];
    assert_eq!(document["palisade"]["count"], 1000, "{document}");
    assert_eq!(document["@timestamp"], "2025-11-24T16:00:00.000Z", "first seen");
}
