//! The Kubernetes manifests (`deploy/k8s/base`) against the real kube-apiserver: each object is created with a
//! server-side dry run and strict field validation, and must be accepted. Then the same objects, as the audit
//! events their creation would log, go through the detector with the configuration the manifests ship: Palisade's
//! own deployment must raise no alert. Without the shipped exceptions it must raise exactly the one that the
//! exception explains (so the test sees a change in either).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use palisade_detect::{DetectConfig, Engine, Event};
use palisade_schemas::AuditEvent;
use serde_json::{Value, json};

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/base")
}

/// Every object of the files the kustomization lists, in order.
fn objects() -> Vec<Value> {
    let kustomization: Value =
        serde_yaml::from_str(&std::fs::read_to_string(base().join("kustomization.yaml")).unwrap()).unwrap();
    let mut out = Vec::new();
    for file in kustomization["resources"].as_array().expect("resources") {
        let text = std::fs::read_to_string(base().join(file.as_str().unwrap())).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde_yaml::with::singleton_map_recursive::deserialize(document).unwrap();
            if !value.is_null() {
                out.push(value);
            }
        }
    }
    out
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// The collection path and resource name of a kind.
fn collection(object: &Value) -> (String, &'static str, &'static str) {
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("palisade");
    let (prefix, resource, group) = match object["kind"].as_str().unwrap() {
        "Namespace" => return ("/api/v1/namespaces".into(), "namespaces", ""),
        "ClusterRole" => return ("/apis/rbac.authorization.k8s.io/v1/clusterroles".into(), "clusterroles", RBAC),
        "ClusterRoleBinding" => {
            return ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(), "clusterrolebindings", RBAC);
        }
        "PriorityClass" => {
            return ("/apis/scheduling.k8s.io/v1/priorityclasses".into(), "priorityclasses", "scheduling.k8s.io");
        }
        "ServiceAccount" => ("/api/v1", "serviceaccounts", ""),
        "ConfigMap" => ("/api/v1", "configmaps", ""),
        "Service" => ("/api/v1", "services", ""),
        "PersistentVolumeClaim" => ("/api/v1", "persistentvolumeclaims", ""),
        "DaemonSet" => ("/apis/apps/v1", "daemonsets", "apps"),
        "Deployment" => ("/apis/apps/v1", "deployments", "apps"),
        "PodDisruptionBudget" => ("/apis/policy/v1", "poddisruptionbudgets", "policy"),
        "NetworkPolicy" => ("/apis/networking.k8s.io/v1", "networkpolicies", "networking.k8s.io"),
        other => panic!("the test does not know where {other} goes; add it"),
    };
    (format!("{prefix}/namespaces/{namespace}/{resource}"), resource, group)
}

fn audit_event(object: &Value, n: usize) -> AuditEvent {
    let (_, resource, group) = collection(object);
    let mut event = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": format!("deploy-{n}"),
        "level": "RequestResponse", "stage": "ResponseComplete", "verb": "create", "requestURI": "/apply",
        "user": {"username": "platform-admin"}, "sourceIPs": ["10.0.0.5"],
        "objectRef": {"resource": resource, "apiGroup": group, "name": object["metadata"]["name"]},
        "responseStatus": {"code": 201}, "requestObject": object, "responseObject": object,
        "stageTimestamp": "2026-12-02T10:00:00Z"});
    if let Some(namespace) = object["metadata"]["namespace"].as_str() {
        event["objectRef"]["namespace"] = json!(namespace);
    }
    AuditEvent::from_k8s_json(&event, "production").unwrap()
}

fn raised(config: &DetectConfig, objects: &[Value]) -> BTreeSet<String> {
    let engine = Engine::new(config).unwrap();
    let mut out = BTreeSet::new();
    for (n, object) in objects.iter().enumerate() {
        let event = audit_event(object, n);
        for detection in engine.process(&Event::Audit(&event), 0) {
            out.insert(format!("{} {}", detection.alert_type, detection.workload.unwrap_or_default()));
        }
    }
    out
}

/// The configuration the manifests ship, read as Palisade reads it.
fn shipped_config(objects: &[Value]) -> palisade_pipeline::config::PalisadeConfig {
    let map = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "palisade-config").unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), map["data"]["palisade.toml"].as_str().unwrap()).unwrap();
    let config: palisade_pipeline::config::PalisadeConfig =
        palisade_runtime::config::load(Some(file.path()), std::iter::empty()).expect("the shipped palisade.toml loads");
    config
}

#[test]
fn manifests_pass_a_server_side_dry_run_and_raise_no_palisade_alert() {
    let objects = objects();
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for wanted in ["DaemonSet", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "ServiceAccount"] {
        assert!(kinds.contains(wanted), "the base lacks a {wanted}: {kinds:?}");
    }

    let api = common::apiserver();
    let server = common::env("PALISADE_TEST_APISERVER");
    // Namespaced objects are dry-run inside the real namespace, so it is created for real (once; it may exist).
    let created = api.post(format!("{server}/api/v1/namespaces")).json(&objects[0]).send().unwrap();
    assert!(created.status().is_success() || created.status() == 409, "namespace: {}", created.status());
    for object in &objects[1..] {
        let (path, _, _) = collection(object);
        let answer = api.post(format!("{server}{path}?dryRun=All&fieldValidation=Strict")).json(object).send().unwrap();
        let status = answer.status();
        let body = answer.text().unwrap();
        assert!(status.is_success(), "{} {}: {status} {body}", object["kind"], object["metadata"]["name"]);
        let echoed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echoed["metadata"]["name"], object["metadata"]["name"], "the API server answered with the object");
    }

    let config = shipped_config(&objects);
    assert_eq!(raised(&config.detect, &objects), BTreeSet::new(), "Palisade's own deployment raises no alert");
    let without_exceptions = raised(&DetectConfig::default(), &objects);
    assert_eq!(
        without_exceptions,
        BTreeSet::from([
            "K8S_PrivilegedContainer DaemonSet/palisade-collect".to_owned(),
            "K8S_SensitiveMount DaemonSet/palisade-collect".to_owned()
        ]),
        "only the collector's host mounts and host reach alert, which the shipped exceptions cover"
    );
}
