//! Node path end to end against the real services: `palisade collect` loads the eBPF programs into this
//! machine's kernel, `palisade test-alert` runs the harmless trigger, and K8S.NODE_EICAR reaches the alerts
//! topic and the OpenSearch index through `detect`, `enrich` and `sink`, each a separate process over Kafka.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

#[test]
fn test_alert_on_this_kernel_becomes_an_eicar_alert_on_the_topic_and_in_the_index() {
    let mut stack = common::Stack::new("node");
    stack.set("PALISADE__NODE_NAME", "e2e-node");
    stack.start(&["collect", "detect", "enrich", "sink"]);

    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_palisade")).arg("test-alert").status().unwrap();
    assert!(status.success());
    let (alert, arrived) = common::wait_for_alert(&stack.topic("alerts"), Duration::from_secs(60), |alert| {
        alert["alert_type"] == "K8S.NODE_EICAR" && alert["node"] == "e2e-node"
    })
    .unwrap_or_else(|| panic!("no K8S.NODE_EICAR alert\ncollect log:\n{}", stack.log("collect")));
    eprintln!("E2E node path latency (test-alert -> alert on topic): {} ms", (arrived - started).as_millis());
    assert_eq!(alert["severity"], "High");
    assert_eq!(alert["source"], "NODE");
    assert_eq!(alert["in_container"], false);
    let executable = alert["process"]["executable"].as_str().unwrap();
    assert!(executable.ends_with("/palisade_alerttest_5f3c9e"), "{executable}");
    assert_eq!(alert["process"]["args"][1], "palisade");
    assert!(alert["process"]["parent_chain"][0].as_str().unwrap().ends_with("/palisade"), "{}", alert["process"]);

    let document = common::wait_for_document(
        &stack.index_prefix,
        json!({"bool": {"filter": [{"term": {"rule.id": "K8S.NODE_EICAR"}}, {"term": {"host.name": "e2e-node"}}]}}),
        Duration::from_secs(30),
    )
    .expect("the alert is in the index");
    assert_eq!(document["event"]["id"], alert["id"]);
    assert_eq!(document["event"]["kind"], "alert");
    assert_eq!(document["process"]["executable"], executable);
    assert_eq!(document["palisade"]["in_container"], false);
}
