use palisade_schemas::AuditEvent;
use serde_json::{Value, json};

use super::PrivilegedContainer;
use crate::unit::{Event, StatelessDetector};

fn audit(verb: &str, resource: &str, subresource: Option<&str>, request: Value, response: Option<Value>) -> AuditEvent {
    let mut event = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "id-1",
        "stage": "ResponseComplete", "requestURI": format!("/apis/x/{resource}"), "verb": verb,
        "user": {"username": "alice"}, "sourceIPs": ["10.0.0.9"],
        "objectRef": {"resource": resource, "namespace": "team-a"},
        "responseStatus": {"code": 201}, "requestObject": request,
        "stageTimestamp": "2026-11-27T10:00:00Z"
    });
    if let Some(sub) = subresource {
        event["objectRef"]["subresource"] = json!(sub);
    }
    if let Some(response) = response {
        event["responseObject"] = response;
    }
    AuditEvent::from_k8s_json(&event, "test").unwrap()
}

fn container(name: &str, privileged: Option<bool>) -> Value {
    match privileged {
        Some(p) => {
            json!({"name": name, "image": "nginx:1.27", "securityContext": {"privileged": p}})
        }
        None => json!({"name": name, "image": "nginx:1.27"}),
    }
}

fn pod(containers: Vec<Value>) -> Value {
    json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web"}, "spec": {"containers": containers}})
}

fn fire(event: &AuditEvent) -> Vec<crate::unit::Finding> {
    PrivilegedContainer.detect(&Event::Audit(event))
}

#[test]
fn fires_for_a_privileged_pod() {
    let findings = fire(&audit("create", "pods", None, pod(vec![container("c", Some(true))]), None));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].workload.as_deref(), Some("Pod/web"));
    assert_eq!(findings[0].pod.as_deref(), Some("web"));
    assert_eq!(findings[0].image.as_deref(), Some("nginx:1.27"));
    assert_eq!(findings[0].details["container"], "c");
}

#[test]
fn does_not_fire_for_the_same_pod_unprivileged_or_privileged_false() {
    assert!(fire(&audit("create", "pods", None, pod(vec![container("c", None)]), None)).is_empty());
    assert!(fire(&audit("create", "pods", None, pod(vec![container("c", Some(false))]), None)).is_empty());
}

#[test]
fn fires_for_the_second_container_and_init_and_ephemeral_containers() {
    let mut object = pod(vec![container("a", None), container("b", Some(true))]);
    object["spec"]["initContainers"] = json!([container("init", Some(true))]);
    let findings = fire(&audit("create", "pods", None, object, None));
    let subjects: Vec<&str> = findings.iter().map(|f| f.subject.as_str()).collect();
    assert_eq!(subjects, ["containers/b", "initContainers/init"]);

    let mut debug = pod(vec![container("a", None)]);
    debug["spec"]["ephemeralContainers"] = json!([container("dbg", Some(true))]);
    let findings = fire(&audit("patch", "pods", Some("ephemeralcontainers"), json!({}), Some(debug)));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].subject, "ephemeralContainers/dbg");
}

#[test]
fn fires_for_every_workload_kind_with_a_pod_template() {
    let template = json!({"spec": {"containers": [container("c", Some(true))]}});
    for (resource, kind) in [
        ("deployments", "Deployment"),
        ("statefulsets", "StatefulSet"),
        ("daemonsets", "DaemonSet"),
        ("replicasets", "ReplicaSet"),
        ("jobs", "Job"),
        ("replicationcontrollers", "ReplicationController"),
    ] {
        let object = json!({"kind": kind, "metadata": {"name": "w"}, "spec": {"template": template}});
        let findings = fire(&audit("create", resource, None, object, None));
        assert_eq!(findings.len(), 1, "{kind}");
        assert_eq!(findings[0].workload.as_deref(), Some(format!("{kind}/w").as_str()));
        assert_eq!(findings[0].pod, None);
    }
    let cron = json!({"kind": "CronJob", "metadata": {"name": "cj"}, "spec": {"jobTemplate": {"spec": {"template": template}}}});
    assert_eq!(fire(&audit("create", "cronjobs", None, cron, None)).len(), 1);
}

#[test]
fn failed_dry_run_read_and_other_resources_do_not_fire() {
    let privileged = pod(vec![container("c", Some(true))]);
    let mut denied = audit("create", "pods", None, privileged.clone(), None);
    denied.response_code = Some(403);
    assert!(fire(&denied).is_empty());
    let mut dry = audit("create", "pods", None, privileged.clone(), None);
    dry.request_uri.push_str("?dryRun=All");
    assert!(fire(&dry).is_empty());
    assert!(fire(&audit("get", "pods", None, privileged.clone(), None)).is_empty());
    assert!(fire(&audit("create", "configmaps", None, privileged.clone(), None)).is_empty());
    assert!(fire(&audit("create", "pods", Some("exec"), privileged, None)).is_empty());
}

#[test]
fn falco_trace_corpus_privileged_fires_and_unprivileged_does_not() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/falco_k8s_audit_traces");
    let load = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).expect("corpus beside the checkout");
        AuditEvent::from_k8s_json(&serde_json::from_str(&text).unwrap(), "falco").unwrap()
    };
    assert_eq!(fire(&load("create_nginx_pod_privileged.json")).len(), 1);
    assert_eq!(fire(&load("create_nginx_pod_privileged_2nd_container.json")).len(), 1);
    assert!(fire(&load("create_nginx_pod_unprivileged.json")).is_empty());
    assert!(fire(&load("create_nginx_pod_hostnetwork.json")).is_empty());
}

fn with_capabilities(add: Value, drop: Value) -> Value {
    json!({"name": "c", "image": "alpine:3.20", "securityContext": {"capabilities": {"add": add, "drop": drop}}})
}

#[test]
fn capabilities_that_equal_privileged_fire() {
    let host_pid = |container: Value| {
        let mut object = pod(vec![container]);
        object["spec"]["hostPID"] = json!(true);
        object
    };
    for (object, reason) in [
        (pod(vec![with_capabilities(json!(["ALL"]), json!([]))]), "capabilities.add ALL"),
        (pod(vec![with_capabilities(json!(["all"]), json!(["NET_RAW"]))]), "capabilities.add ALL"),
        (pod(vec![with_capabilities(json!(["CAP_SYS_MODULE"]), json!(["ALL"]))]), "capabilities.add SYS_MODULE"),
        (pod(vec![with_capabilities(json!(["DAC_READ_SEARCH"]), json!(["ALL"]))]), "capabilities.add DAC_READ_SEARCH"),
        // containerd drops everything only for a literal ALL: these drop nothing there.
        (pod(vec![with_capabilities(json!(["ALL"]), json!(["CAP_ALL"]))]), "capabilities.add ALL"),
        (pod(vec![with_capabilities(json!(["ALL"]), json!([" ALL"]))]), "capabilities.add ALL"),
        (host_pid(with_capabilities(json!(["SYS_ADMIN"]), json!([]))), "capabilities.add SYS_ADMIN with hostPID"),
        (
            host_pid(with_capabilities(json!(["sys_ptrace"]), json!(["ALL"]))),
            "capabilities.add SYS_PTRACE with hostPID",
        ),
    ] {
        let findings = fire(&audit("create", "pods", None, object.clone(), None));
        assert_eq!(findings.len(), 1, "{object}");
        assert_eq!(findings[0].details["reason"], reason);
    }
    let findings = fire(&audit("create", "pods", None, pod(vec![container("c", Some(true))]), None));
    assert_eq!(findings[0].details["reason"], "privileged");
}

#[test]
fn ordinary_capabilities_do_not_fire() {
    for object in [
        pod(vec![with_capabilities(json!(["NET_BIND_SERVICE"]), json!(["ALL"]))]),
        // SYS_ADMIN alone stays in the container's own PID namespace: not the host's processes.
        pod(vec![with_capabilities(json!(["SYS_ADMIN"]), json!([]))]),
        // Added then dropped wholesale: the runtime grants nothing.
        pod(vec![with_capabilities(json!(["ALL"]), json!(["ALL"]))]),
        pod(vec![with_capabilities(json!(["all"]), json!(["all"]))]),
        pod(vec![with_capabilities(json!(["NET_ADMIN", "NET_RAW"]), json!([]))]),
    ] {
        assert!(fire(&audit("create", "pods", None, object.clone(), None)).is_empty(), "{object}");
    }
}
