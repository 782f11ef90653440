use palisade_schemas::AuditEvent;
use serde_json::{Value, json};

use super::KubeHunter;
use crate::unit::Event;
use crate::unit::WindowedDetector;
use crate::windowed::WindowConfig;

fn event(verb: &str, resource: &str, body: Value, code: i64) -> AuditEvent {
    let event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": verb, "requestURI": "/x",
        "user": {"username": "system:serviceaccount:default:default"}, "userAgent": "python-requests/2.31.0",
        "objectRef": {"resource": resource, "namespace": "default"}, "responseStatus": {"code": code},
        "requestObject": body, "stageTimestamp": "2026-11-27T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

fn fires(event: &AuditEvent) -> bool {
    !KubeHunter::new(WindowConfig::default()).observe(&Event::Audit(event)).is_empty()
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

fn request(verb: &str, uri: &str, resource: Option<&str>, agent: &str, second: u32) -> AuditEvent {
    let mut event = json!({"kind": "Event", "auditID": format!("{uri}-{second}"), "stage": "ResponseComplete", "verb": verb,
        "requestURI": uri, "user": {"username": "system:serviceaccount:default:default"}, "userAgent": agent,
        "sourceIPs": ["10.0.0.9"], "responseStatus": {"code": 200},
        "stageTimestamp": format!("2026-11-27T10:{:02}:{:02}Z", second / 60, second % 60)});
    if let Some(resource) = resource {
        event["objectRef"] = json!({"resource": resource});
    }
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

/// kube-hunter's passive hunters, in its order, `gap` seconds apart from `start`.
fn discovery(agent: &str, start: u32, gap: u32) -> Vec<AuditEvent> {
    [
        ("get", "/api", None),
        ("list", "/api/v1/namespaces", Some("namespaces")),
        ("list", "/api/v1/pods", Some("pods")),
        ("list", "/apis/rbac.authorization.k8s.io/v1/roles", Some("roles")),
        ("list", "/apis/rbac.authorization.k8s.io/v1/clusterroles", Some("clusterroles")),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (verb, uri, resource))| request(verb, uri, resource, agent, start + i as u32 * gap))
    .collect()
}

fn passive_findings(events: &[AuditEvent]) -> Vec<String> {
    let mut detector = KubeHunter::new(WindowConfig::default());
    events.iter().flat_map(|e| detector.observe(&Event::Audit(e))).map(|f| f.details["signature"].clone()).collect()
}

#[test]
fn passive_discovery_from_a_python_client_fires_once_per_window() {
    let found = passive_findings(&discovery("python-requests/2.31.0", 0, 1));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("passive discovery: api discovery, list namespaces, list pods, list roles"),
        "{found:?}"
    );
    // The kubernetes Python client (kube-hunter's pod mode) too.
    assert_eq!(passive_findings(&discovery("OpenAPI-Generator/12.0.1/python", 0, 1)).len(), 1);
}

#[test]
fn passive_look_alikes_do_not_fire() {
    // kubectl listing the same things; the same calls spread over more than the window; three calls only.
    assert!(passive_findings(&discovery("kubectl/v1.31.0 (linux/amd64) kubernetes/abc", 0, 1)).is_empty());
    assert!(passive_findings(&discovery("python-requests/2.31.0", 0, 30)).is_empty());
    assert!(passive_findings(&discovery("python-requests/2.31.0", 0, 1)[..3]).is_empty());
}

#[test]
fn only_bodies_that_can_hold_a_signature_are_parsed() {
    use super::detector::may_carry_signature;
    let ordinary = r#"{"kind":"Pod","spec":{"containers":[{"name":"web","image":"nginx:1.25"}]}}"#;
    assert!(!may_carry_signature("create", "pods", ordinary));
    assert!(may_carry_signature("create", "pods", r#"{"image":"nginx:1.7.9"}"#));
    // An escape can spell the image without its text: parsed, then decided on the value.
    assert!(may_carry_signature("create", "pods", r#"{"image":"nginx\u003a1.7.9"}"#));
    assert!(!may_carry_signature("patch", "pods", r#"[{"op":"add","path":"/metadata/labels/a","value":"b"}]"#));
    assert!(may_carry_signature("create", "namespaces", "{}"), "no cheap test for namespaces: always parsed");
}
