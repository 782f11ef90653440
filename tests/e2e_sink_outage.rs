//! The search index goes away for 60 s while alerts flow, then comes back: `palisade sink` recovers by itself,
//! nothing is lost (every alert indexed once and on the alerts topic once), and the metrics show the outage
//! (retries counted). Real Kafka and a real OpenSearch node, stopped and started by the testbed script.

mod common;

use std::time::{Duration, Instant};

use palisade_schemas::{Alert, Codec};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

const METRICS: &str = "127.0.0.1:19477";

fn testbed(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed");
    let status = std::process::Command::new(script).args(args).status().unwrap();
    assert!(status.success(), "scripts/testbed {args:?}");
}

/// A probe's (`/healthz`, `/readyz`) status and body.
fn probe(path: &str) -> (u16, String) {
    let response = reqwest::blocking::get(format!("http://{METRICS}{path}")).unwrap();
    (response.status().as_u16(), response.text().unwrap_or_default())
}

fn retries() -> f64 {
    let text = reqwest::blocking::get(format!("http://{METRICS}/metrics")).and_then(|r| r.text()).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(r#"palisade_sink_retries_total{output="opensearch"}"#)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_60_second_index_outage_loses_nothing_and_the_sink_recovers_by_itself() {
    let mut stack = common::Stack::new("outage");
    stack.set("PALISADE__METRICS_LISTEN_ADDR", METRICS);
    stack.start(&["sink"]);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/alert.v2.json")).unwrap();
    let template: Alert = serde_json::from_str(&text).unwrap();
    let namespace = format!("outage-{}", stack.run.to_lowercase());
    let codec = Codec::<Alert>::new().unwrap();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let enriched = stack.topic("enriched");
    let mut sent = 0usize;
    let mut send = |count: usize| {
        for _ in 0..count {
            let mut alert = template.clone();
            alert.id = format!("{}-{sent:05}", stack.run);
            alert.namespace = Some(namespace.clone());
            let payload = codec.encode(&alert).unwrap();
            producer.send(BaseRecord::to(&enriched).key(&alert.id).payload(&payload)).map_err(|(e, _)| e).unwrap();
            sent += 1;
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    let query = json!({"term": {"orchestrator.namespace": namespace}});

    send(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::count_documents(&stack.index_prefix, query.clone()) < 200 {
        assert!(Instant::now() < deadline, "alerts indexed before the outage:\n{}", stack.log("sink"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let retries_before = retries();
    // The sink has started and hands its output on: ready.
    let (status, body) = probe("/readyz");
    assert_eq!((status, body.as_str()), (200, "sink ok\n"), "ready before the outage");

    testbed(&["down", "opensearch"]);
    let outage = Instant::now();
    // Alerts keep coming during the outage, a few every second.
    while outage.elapsed() < Duration::from_secs(60) {
        send(10);
        std::thread::sleep(Duration::from_secs(1));
    }
    let during = retries();
    // Sixty seconds without the index is past the 30 s grace: the liveness probe says which stage is stuck.
    let (status, body) = probe("/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("sink stuck for"), "{body}");
    let (status, body) = probe("/readyz");
    assert_eq!(status, 503, "not ready while stuck: {body}");
    testbed(&["up", "opensearch"]);
    send(200);
    stack.assert_running();

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut indexed = 0;
    while Instant::now() < deadline {
        indexed = common::count_documents(&stack.index_prefix, query.clone());
        if indexed >= sent as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(indexed, sent as u64, "every alert indexed once after the outage:\n{}", stack.log("sink"));
    let (status, body) = probe("/healthz");
    assert_eq!(status, 200, "healthy again once the index took the backlog: {body}");
    assert!(body.contains("sink ok"), "{body}");
    let (status, body) = probe("/readyz");
    assert_eq!(status, 200, "ready again: {body}");
    assert!(during > retries_before, "the retries metric shows the outage ({retries_before} → {during})");
    let on_topic = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(30), |seen| seen.len() > sent);
    let ids: std::collections::BTreeSet<&str> = on_topic.iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!((on_topic.len(), ids.len()), (sent, sent), "each alert once on the alerts topic");
}
