//! Audit path end to end against the real services: a privileged Pod created through the real kube-apiserver
//! → audit webhook (batch backend) → `palisade audit` → Kafka → `palisade detect` → `palisade enrich` →
//! `palisade sink` → the alerts topic and an OpenSearch index. Each stage is a separate `palisade` process.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

#[test]
fn privileged_pod_through_the_api_server_becomes_an_alert_on_the_topic_and_in_the_index() {
    let mut stack = common::Stack::new("audit");
    stack.with_testbed_webhook();
    stack.start(&["audit", "detect", "enrich", "sink"]);

    let api = common::apiserver();
    let base = common::env("PALISADE_TEST_APISERVER");
    let namespace = format!("e2e-{}", stack.run.to_lowercase());
    common::create_namespace(&api, &namespace);

    let pod = |name: &str, privileged: bool| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                        "securityContext": {"privileged": privileged}}]}})
    };
    let started = Instant::now();
    let response =
        api.post(format!("{base}/api/v1/namespaces/{namespace}/pods")).json(&pod("priv", true)).send().unwrap();
    assert!(response.status().is_success(), "privileged pod: {}", response.text().unwrap());
    let response =
        api.post(format!("{base}/api/v1/namespaces/{namespace}/pods")).json(&pod("plain", false)).send().unwrap();
    assert!(response.status().is_success(), "plain pod: {}", response.text().unwrap());

    let (alert, arrived) = common::wait_for_alert(&stack.topic("alerts"), Duration::from_secs(60), |alert| {
        alert["alert_type"] == "K8S_PrivilegedContainer" && alert["namespace"] == namespace.as_str()
    })
    .unwrap_or_else(|| {
        panic!(
            "no K8S_PrivilegedContainer alert on the alerts topic\naudit log:\n{}\ndetect log:\n{}",
            stack.log("audit"),
            stack.log("detect")
        )
    });
    eprintln!("E2E audit path latency (pod create -> alert on topic): {} ms", (arrived - started).as_millis());
    assert_eq!(alert["pod"], "priv");
    assert_eq!(alert["workload"], "Pod/priv");
    assert_eq!(alert["image"], "nginx:1.27");
    assert_eq!(alert["user"], "palisade-test-admin");
    assert_eq!(alert["cluster"], "testbed");
    assert_eq!(alert["severity"], "Informational");
    assert_eq!(alert["source"], "AUDIT");
    assert_eq!(alert["techniques"], json!(["T1610", "T1611"]));
    let evidence: serde_json::Value = serde_json::from_str(alert["evidence"][0].as_str().unwrap()).unwrap();
    assert_eq!(evidence["verb"], "create", "the audit event is kept verbatim as evidence");
    assert_eq!(evidence["objectRef"]["name"], "priv");

    let document = common::wait_for_document(
        &stack.index_prefix,
        json!({"bool": {"filter": [{"term": {"rule.id": "K8S_PrivilegedContainer"}}, {"term": {"orchestrator.namespace": namespace}}]}}),
        Duration::from_secs(30),
    )
    .expect("the alert is in the index");
    assert_eq!(document["event"]["kind"], "alert");
    assert_eq!(document["event"]["id"], alert["id"]);
    assert_eq!(document["orchestrator"]["resource"]["name"], "priv");
    assert_eq!(document["container"]["image"]["name"], "nginx:1.27");
    assert_eq!(document["threat"]["technique"]["id"], json!(["T1610", "T1611"]));
    assert_eq!(document["user"]["name"], "palisade-test-admin");

    // The unprivileged twin raised nothing: wait for the sink to have passed it, then count.
    std::thread::sleep(Duration::from_secs(2));
    let for_plain = common::count_documents(
        &stack.index_prefix,
        json!({"bool": {"filter": [{"term": {"orchestrator.namespace": namespace}}, {"term": {"orchestrator.resource.name": "plain"}}]}}),
    );
    assert_eq!(for_plain, 0, "the unprivileged pod raised an alert");
    let total = common::count_documents(&stack.index_prefix, json!({"term": {"orchestrator.namespace": namespace}}));
    assert_eq!(total, 1, "exactly one alert document for the namespace");
    let _ = api.delete(format!("{base}/api/v1/namespaces/{namespace}")).send();
}
