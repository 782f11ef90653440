use palisade_schemas::AuditEvent;
use serde_json::json;

use super::DeleteEvents;
use crate::unit::{Event, StatelessDetector};

fn event(user: &str, verb: &str, group: &str, resource: &str) -> AuditEvent {
    let event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": verb, "requestURI": "/x",
        "user": {"username": user}, "objectRef": {"resource": resource, "apiGroup": group, "namespace": "default"},
        "responseStatus": {"code": 200}, "stageTimestamp": "2026-11-27T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

#[test]
fn deleting_events_fires_for_both_api_groups() {
    assert_eq!(DeleteEvents.detect(&Event::Audit(&event("mallory", "deletecollection", "", "events"))).len(), 1);
    assert_eq!(
        DeleteEvents
            .detect(&Event::Audit(&event("system:serviceaccount:default:sa", "delete", "events.k8s.io", "events")))
            .len(),
        1
    );
}

#[test]
fn reading_events_other_deletes_and_platform_clean_up_do_not_fire() {
    assert!(DeleteEvents.detect(&Event::Audit(&event("mallory", "list", "", "events"))).is_empty());
    assert!(DeleteEvents.detect(&Event::Audit(&event("mallory", "delete", "", "pods"))).is_empty());
    let cleanup = event("system:serviceaccount:kube-system:namespace-controller", "deletecollection", "", "events");
    assert!(DeleteEvents.detect(&Event::Audit(&cleanup)).is_empty());
}
