use palisade_schemas::AuditEvent;
use serde_json::{Value, json};

use super::{AdmissionController, CoreDnsModification};
use crate::unit::{Event, StatelessDetector};

fn event(verb: &str, group: &str, resource: &str, namespace: Option<&str>, name: &str, object: Value) -> AuditEvent {
    let mut event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": verb, "requestURI": "/x",
        "user": {"username": "mallory"}, "objectRef": {"resource": resource, "apiGroup": group, "name": name},
        "responseStatus": {"code": 200}, "requestObject": object, "responseObject": object,
        "stageTimestamp": "2026-11-27T10:00:00Z"});
    if let Some(namespace) = namespace {
        event["objectRef"]["namespace"] = json!(namespace);
    }
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

#[test]
fn webhook_configurations_fire_with_their_targets() {
    let hook = json!({"kind": "MutatingWebhookConfiguration", "metadata": {"name": "evil"},
        "webhooks": [{"name": "a.example", "clientConfig": {"url": "https://203.0.113.7/mutate"}},
                     {"name": "b.example", "clientConfig": {"service": {"namespace": "x", "name": "hook"}}}]});
    let findings = AdmissionController.detect(&Event::Audit(&event(
        "create",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        None,
        "evil",
        hook,
    )));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].details["webhook_targets"], "https://203.0.113.7/mutate, service x/hook");
    assert_eq!(findings[0].workload.as_deref(), Some("MutatingWebhookConfiguration/evil"));
}

#[test]
fn reading_webhook_configurations_does_not_fire() {
    let read = event("list", "admissionregistration.k8s.io", "validatingwebhookconfigurations", None, "", json!(null));
    assert!(AdmissionController.detect(&Event::Audit(&read)).is_empty());
}

#[test]
fn coredns_configmap_changes_fire_including_delete() {
    let corefile = json!({"kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
        "data": {"Corefile": ".:53 { forward . 198.51.100.9 }"}});
    for verb in ["update", "patch", "delete"] {
        let findings = CoreDnsModification.detect(&Event::Audit(&event(
            verb,
            "",
            "configmaps",
            Some("kube-system"),
            "coredns",
            corefile.clone(),
        )));
        assert_eq!(findings.len(), 1, "{verb}");
    }
    let custom = event(
        "create",
        "",
        "configmaps",
        Some("kube-system"),
        "coredns-custom",
        json!({"metadata": {"name": "coredns-custom"}}),
    );
    assert_eq!(CoreDnsModification.detect(&Event::Audit(&custom)).len(), 1);
}

#[test]
fn other_configmaps_and_namespaces_do_not_fire() {
    let other = event(
        "update",
        "",
        "configmaps",
        Some("kube-system"),
        "kube-proxy",
        json!({"metadata": {"name": "kube-proxy"}}),
    );
    assert!(CoreDnsModification.detect(&Event::Audit(&other)).is_empty());
    let elsewhere =
        event("update", "", "configmaps", Some("default"), "coredns", json!({"metadata": {"name": "coredns"}}));
    assert!(CoreDnsModification.detect(&Event::Audit(&elsewhere)).is_empty());
    let read = event("get", "", "configmaps", Some("kube-system"), "coredns", json!(null));
    assert!(CoreDnsModification.detect(&Event::Audit(&read)).is_empty());
}
