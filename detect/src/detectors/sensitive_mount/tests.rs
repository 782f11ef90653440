use palisade_schemas::AuditEvent;
use serde_json::{Value, json};

use super::SensitiveMount;
use super::detector::sensitive;
use crate::unit::{Event, StatelessDetector};

fn create(resource: &str, object: Value) -> AuditEvent {
    let event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": "create",
        "requestURI": "/api", "user": {"username": "mallory"}, "objectRef": {"resource": resource, "namespace": "ns"},
        "responseStatus": {"code": 201}, "requestObject": object, "stageTimestamp": "2026-11-27T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

fn pod_with(paths: &[&str]) -> Value {
    let volumes: Vec<Value> =
        paths.iter().enumerate().map(|(i, p)| json!({"name": format!("v{i}"), "hostPath": {"path": p}})).collect();
    json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}], "volumes": volumes}})
}

#[test]
fn path_matching_covers_children_but_not_siblings() {
    assert_eq!(sensitive("/"), Some("/"));
    assert_eq!(sensitive("/etc/"), Some("/etc"));
    assert_eq!(sensitive("/etc/kubernetes/pki"), Some("/etc"));
    assert_eq!(sensitive("/var/run/docker.sock"), Some("/var/run/docker.sock"));
    assert_eq!(sensitive("/etcetera"), None, "a sibling with the same prefix is not under /etc");
    assert_eq!(sensitive("/data/app"), None);
    assert_eq!(sensitive("/var/lib/app"), None);
}

#[test]
fn fires_for_docker_socket_and_root_mounts_in_any_workload() {
    let findings =
        SensitiveMount::default().detect(&Event::Audit(&create("pods", pod_with(&["/var/run/docker.sock", "/"]))));
    let paths: Vec<&str> = findings.iter().map(|f| f.details["host_path"].as_str()).collect();
    assert_eq!(paths, ["/var/run/docker.sock", "/"]);
    let deployment =
        json!({"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": pod_with(&["/proc"])}});
    assert_eq!(SensitiveMount::default().detect(&Event::Audit(&create("deployments", deployment))).len(), 1);
}

#[test]
fn does_not_fire_for_harmless_host_paths_or_other_volumes() {
    assert!(
        SensitiveMount::default()
            .detect(&Event::Audit(&create("pods", pod_with(&["/data/cache", "/opt/app"]))))
            .is_empty()
    );
    let empty_dir = json!({"kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "tmp", "emptyDir": {}}]}});
    assert!(SensitiveMount::default().detect(&Event::Audit(&create("pods", empty_dir))).is_empty());
}

#[test]
fn falco_traces_sensitive_fires_and_unsensitive_does_not() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/falco_k8s_audit_traces");
    let load = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        AuditEvent::from_k8s_json(&serde_json::from_str(&text).unwrap(), "falco").unwrap()
    };
    assert_eq!(
        SensitiveMount::default().detect(&Event::Audit(&load("create_nginx_pod_sensitive_mount.json"))).len(),
        1
    );
    assert_eq!(
        SensitiveMount::default()
            .detect(&Event::Audit(&load("create_nginx_pod_sensitive_mount_2nd_container.json")))
            .len(),
        1
    );
    assert!(
        SensitiveMount::default().detect(&Event::Audit(&load("create_nginx_pod_unsensitive_mount.json"))).is_empty()
    );
}
