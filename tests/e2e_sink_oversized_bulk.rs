//! A bulk request over the node's `http.max_content_length` (the testbed sets 4 MB) gets 413 for the whole
//! request, which used to be retried for ever. The writer halves it until the pieces fit, and rejects (for the
//! dead-letter topic) an alert too large on its own. Real OpenSearch.

mod common;

use palisade_schemas::Alert;
use palisade_sink::{OpenSearchConfig, OpenSearchWriter};
use serde_json::json;

fn alert(id: &str, evidence_bytes: usize) -> Alert {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/alert.v2.json")).unwrap();
    let mut alert: Alert = serde_json::from_str(&text).unwrap();
    alert.id = id.to_owned();
    alert.evidence = vec!["e".repeat(evidence_bytes)];
    alert
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_request_over_the_node_limit_is_split_and_a_lone_giant_rejected() {
    let prefix = format!("palisade-test-bulk413-{}", std::process::id());
    let config: OpenSearchConfig = serde_json::from_value(json!({
        "url": common::env("PALISADE_TEST_OPENSEARCH"), "index_prefix": prefix, "retention_days": 0,
        "retry_initial_backoff_ms": 10, "retry_max_backoff_ms": 100,
    }))
    .unwrap();
    let writer = OpenSearchWriter::new(&config).unwrap();
    writer.prepare().await.unwrap();
    // 60 alerts of 100 KB: a 6 MB request, over the 4 MB limit; each alert alone fits.
    let mut alerts: Vec<Alert> = (0..60).map(|n| alert(&format!("{prefix}-{n}"), 100_000)).collect();
    alerts.insert(30, alert(&format!("{prefix}-giant"), 5_000_000));
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(120), writer.write(&alerts))
        .await
        .expect("the write ends instead of retrying the same request for ever")
        .unwrap();
    assert_eq!(outcome.indexed, 60);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].0, format!("{prefix}-giant"));
    assert!(outcome.rejected[0].1.starts_with("HTTP 413"), "{}", outcome.rejected[0].1);
    let _ = reqwest::Client::new().post(format!("{}/{prefix}-*/_refresh", config.url)).send().await;
    let count: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/{prefix}-*/_count", config.url))
        .json(&json!({"query": {"match_all": {}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["count"], 60);
    let _ = reqwest::Client::new().delete(format!("{}/{prefix}-*", config.url)).send().await;
}
