//! A record over Kafka's 1 MB limit must not wedge the pipeline: a real ConfigMap of about 480 KB (240 KB of data
//! and its `kubectl apply` annotation) created through the real API server (logged at RequestResponse, so its
//! audit event carries it twice) reaches the audit topic shrunk and flagged, and a privileged pod created in the
//! same second still raises its alert.

mod common;

use std::time::Duration;

use serde_json::json;

#[test]
fn a_480_kb_configmap_is_shrunk_and_the_pod_beside_it_still_alerts() {
    let mut stack = common::Stack::new("oversized");
    stack.with_testbed_webhook();
    stack.set("PALISADE__ENRICH__DEDUP_WINDOW_SECS", "0");
    stack.start(&["audit", "detect", "enrich", "sink"]);

    let api = common::apiserver();
    let base = common::env("PALISADE_TEST_APISERVER");
    let id = stack.run.to_lowercase();
    let ns = format!("e2e-{id}");
    common::create_namespace(&api, &ns);
    // A Grafana-style dashboard bundle: one key of 300 KB, as `kubectl apply` sends it (the last-applied
    // annotation holds it a second time).
    let dashboard = "panel graph latency p99 ".repeat(10_000);
    // Annotations may hold 256 KiB in all, so this is about the largest `kubectl apply` can send: 240 KB of data,
    // again in the annotation, a ConfigMap of some 480 KB.
    assert!(dashboard.len() > 235_000 && dashboard.len() < 250_000, "{}", dashboard.len());
    let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "dashboards", "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"dashboard.json": dashboard}}).to_string()}},
        "data": {"dashboard.json": dashboard}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "beside-the-big-one"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": true}}]}});
    let created = api.post(format!("{base}/api/v1/namespaces/{ns}/configmaps")).json(&configmap).send().unwrap();
    let status = created.status();
    assert!(status.is_success(), "{status} {}", created.text().unwrap());
    let created = api.post(format!("{base}/api/v1/namespaces/{ns}/pods")).json(&pod).send().unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    let alert = common::wait_for_alert(&stack.topic("alerts"), Duration::from_secs(90), |alert| {
        alert["alert_type"] == "K8S_PrivilegedContainer" && alert["workload"] == "Pod/beside-the-big-one"
    });
    assert!(alert.is_some(), "the pod's alert is not held up\naudit log:\n{}", stack.log("audit"));
    let event = common::wait_for_audit_event(&stack.topic("audit_events"), Duration::from_secs(30), |event| {
        event.name.as_deref() == Some("dashboards") && event.verb == "create" && event.namespace.as_deref() == Some(&ns)
    })
    .expect("the ConfigMap's audit event reached the audit topic");
    let original: usize = event.annotations[palisade_schemas::bounds::TRUNCATED_FROM_BYTES].parse().unwrap();
    // Unshrunk, the record holds the event and its request and response objects again: about twice this, over
    // Kafka's 1 MB.
    assert!(original > 600_000, "the event as the API server sent it: {original} bytes");
    assert!(event.raw.len() <= palisade_schemas::bounds::MAX_AUDIT_EVENT_JSON_BYTES);
    let request: serde_json::Value = serde_json::from_str(event.request_object.as_deref().unwrap()).unwrap();
    assert_eq!(request["metadata"]["name"], "dashboards", "the shrunk object is still the object");
    assert!(!stack.log("audit").contains("retry"), "nothing was retried:\n{}", stack.log("audit"));

    let _ = api.delete(format!("{base}/api/v1/namespaces/{ns}")).send();
}
