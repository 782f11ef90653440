use palisade_schemas::AuditEvent;
use serde_json::{Value, json};

use super::KubeHunter;
use crate::engine::{Event, StatelessDetector};

fn event(verb: &str, resource: &str, body: Value, code: i64) -> AuditEvent {
    let event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": verb, "requestURI": "/x",
        "user": {"username": "system:serviceaccount:default:default"}, "userAgent": "python-requests/2.31.0",
        "objectRef": {"resource": resource, "namespace": "default"}, "responseStatus": {"code": code},
        "requestObject": body, "stageTimestamp": "2026-11-27T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

fn fires(event: &AuditEvent) -> bool {
    !KubeHunter.detect(&Event::Audit(event)).is_empty()
}

#[test]
fn active_hunter_requests_fire_even_when_refused() {
    assert!(fires(&event("patch", "pods", json!([{"op": "add", "path": "/hello", "value": ["world"]}]), 200)));
    assert!(fires(&event("patch", "clusterroles", json!([{"op": "add", "path": "/hello", "value": ["world"]}]), 403)));
    let pod = json!({"kind": "Pod", "metadata": {"name": "3fa9c"},
        "spec": {"containers": [{"name": "3fa9c", "image": "nginx:1.7.9", "securityContext": {"privileged": true}}]}});
    assert!(fires(&event("create", "pods", pod, 201)));
    assert!(fires(&event(
        "create",
        "namespaces",
        json!({"metadata": {"name": "0be12", "labels": {"name": "0be12"}}}),
        201
    )));
    let role = json!({"metadata": {"name": "a1b2c"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]}]});
    assert!(fires(&event("create", "clusterroles", role, 403)));
}

#[test]
fn look_alikes_do_not_fire_and_the_user_agent_alone_is_not_enough() {
    assert!(!fires(&event("patch", "pods", json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]), 200)));
    let nginx = json!({"kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx:1.7.9"}]}});
    assert!(!fires(&event("create", "pods", nginx, 201)), "an old nginx is not kube-hunter");
    assert!(!fires(&event(
        "create",
        "namespaces",
        json!({"metadata": {"name": "team1", "labels": {"name": "team1"}}}),
        201
    )));
    assert!(!fires(&event("create", "namespaces", json!({"metadata": {"name": "0be12"}}), 201)));
    assert!(!fires(&event("list", "pods", json!(null), 200)), "python-requests listing pods is not enough");
}
