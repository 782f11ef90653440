use palisade_schemas::{AuditEvent, CloudActivity};
use serde_json::{Value, json};

use super::{AbnormalMiActivity, BaselinesConfig, KubeSystemContainer, ServiceAccountRareOperation};
use crate::baseline::BaselineConfig;
use crate::unit::WindowedDetector;
use crate::unit::{Event, Finding};

const LEARN: BaselineConfig = BaselineConfig { learning_secs: 600, max_keys: 100, max_operations: 100 };

/// An audit event at `secs` seconds into the day.
fn request(
    user: &str,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
    secs: u32,
    object: Option<Value>,
) -> AuditEvent {
    let mut event = json!({"kind": "Event", "auditID": format!("{user}-{verb}-{resource}-{secs}"), "stage": "ResponseComplete",
        "verb": verb, "requestURI": "/api", "user": {"username": user},
        "objectRef": {"resource": resource}, "responseStatus": {"code": 200},
        "stageTimestamp": format!("2026-11-27T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)});
    if let Some(namespace) = namespace {
        event["objectRef"]["namespace"] = json!(namespace);
    }
    if let Some((resource, sub)) = resource.split_once('/') {
        event["objectRef"]["resource"] = json!(resource);
        event["objectRef"]["subresource"] = json!(sub);
    }
    if let Some(object) = object {
        event["requestObject"] = object;
    }
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

fn observe(detector: &mut dyn WindowedDetector, event: &AuditEvent) -> Vec<Finding> {
    detector.observe(&Event::Audit(event))
}

const SA: &str = "system:serviceaccount:shop:web";

#[test]
fn a_service_account_fires_on_an_operation_it_did_not_learn() {
    let mut detector = ServiceAccountRareOperation::new(LEARN);
    assert!(observe(&mut detector, &request(SA, "get", "configmaps", Some("shop"), 0, None)).is_empty());
    assert!(observe(&mut detector, &request(SA, "list", "pods", Some("shop"), 60, None)).is_empty());
    // After learning: the learned operations stay quiet, on any object name.
    assert!(observe(&mut detector, &request(SA, "get", "configmaps", Some("shop"), 700, None)).is_empty());
    let found = observe(&mut detector, &request(SA, "list", "secrets", Some("kube-system"), 701, None));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].details["operation"], "list core/secrets other-namespace");
    assert_eq!(found[0].details["service_account"], "shop:web");
    assert_eq!(found[0].details["known_operations"], "2");
    // Reported once; the same verb in its own namespace, or on a subresource, is another operation.
    assert!(observe(&mut detector, &request(SA, "list", "secrets", Some("kube-system"), 702, None)).is_empty());
    let exec = observe(&mut detector, &request(SA, "create", "pods/exec", Some("shop"), 703, None));
    assert_eq!(exec[0].details["operation"], "create core/pods/exec own-namespace");
}

#[test]
fn people_and_unfinished_stages_are_not_profiled() {
    let mut detector = ServiceAccountRareOperation::new(BaselineConfig { learning_secs: 0, ..LEARN });
    assert!(observe(&mut detector, &request("alice", "list", "secrets", None, 700, None)).is_empty());
    let mut started = request(SA, "list", "secrets", None, 700, None);
    started.stage = "RequestReceived".into();
    assert!(observe(&mut detector, &started).is_empty());
    assert_eq!(detector.keys(), 0);
}

#[test]
fn learning_survives_a_snapshot_and_restore() {
    let mut detector = ServiceAccountRareOperation::new(LEARN);
    observe(&mut detector, &request(SA, "get", "pods", Some("shop"), 0, None));
    let saved = detector.snapshot();
    let mut restored = ServiceAccountRareOperation::new(LEARN);
    restored.restore(&saved).unwrap();
    assert_eq!(restored.learning().unwrap().learning, 1);
    assert!(observe(&mut restored, &request(SA, "get", "pods", Some("shop"), 700, None)).is_empty(), "learned before");
    assert_eq!(observe(&mut restored, &request(SA, "delete", "pods", Some("shop"), 701, None)).len(), 1);
    assert_eq!(restored.learning().unwrap().active, 1);
}

fn pod(name: &str, generate: Option<&str>, labels: Value, container: &str, image: &str) -> Value {
    let mut pod = json!({"kind": "Pod", "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
        "spec": {"containers": [{"name": container, "image": image}]}});
    if let Some(generate) = generate {
        pod["metadata"]["generateName"] = json!(generate);
    }
    pod
}

fn deployment(name: &str, container: &str, image: &str) -> Value {
    json!({"kind": "Deployment", "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": container, "image": image}]}}}})
}

fn create(resource: &str, secs: u32, object: Value) -> AuditEvent {
    request("admin", "create", resource, Some("kube-system"), secs, Some(object))
}

#[test]
fn a_new_kube_system_workload_fires_after_learning_and_known_ones_do_not() {
    let mut detector = KubeSystemContainer::new(&BaselinesConfig { kube_system: LEARN, ..BaselinesConfig::default() });
    assert!(
        observe(&mut detector, &create("deployments", 0, deployment("node-agent", "agent", "corp/agent:1.0")))
            .is_empty()
    );
    // After learning: the learned workload's pods (controller suffixes), an upgrade, and an allow-listed add-on.
    let labels = json!({"app": "node-agent", "pod-template-hash": "5d78c9869d"});
    let known = pod("node-agent-5d78c9869d-x7x2p", Some("node-agent-5d78c9869d-"), labels, "agent", "corp/agent:1.0");
    assert!(observe(&mut detector, &create("pods", 700, known)).is_empty());
    assert!(
        observe(&mut detector, &create("deployments", 701, deployment("node-agent", "agent", "corp/agent:2.0")))
            .is_empty()
    );
    let proxy = pod(
        "kube-proxy-8xk2q",
        Some("kube-proxy-"),
        json!({"k8s-app": "kube-proxy"}),
        "kube-proxy",
        "registry.k8s.io/kube-proxy:v1.31.0",
    );
    assert!(observe(&mut detector, &create("pods", 702, proxy)).is_empty());
    let etcd = pod("etcd-node-1", None, json!({}), "etcd", "registry.k8s.io/etcd:3.5.15-0");
    assert!(observe(&mut detector, &create("pods", 703, etcd)).is_empty());
    // A new workload, and a known name running another image, fire; each once.
    let miner = deployment("kube-metrics", "metrics", "evil/xmrig:latest");
    let found = observe(&mut detector, &create("deployments", 704, miner.clone()));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].workload.as_deref(), Some("Deployment/kube-metrics"));
    assert_eq!(found[0].image.as_deref(), Some("evil/xmrig:latest"));
    assert!(observe(&mut detector, &create("deployments", 705, miner)).is_empty());
    let swapped =
        observe(&mut detector, &create("deployments", 706, deployment("node-agent", "agent", "evil/agent:1.0")));
    assert_eq!(swapped.len(), 1);
    // Other namespaces are not this baseline's business.
    let elsewhere = request("admin", "create", "deployments", Some("shop"), 707, Some(deployment("x", "x", "x:1")));
    assert!(observe(&mut detector, &elsewhere).is_empty());
}

#[test]
fn configured_allow_entries_extend_the_shipped_list() {
    let config = BaselinesConfig {
        kube_system: BaselineConfig { learning_secs: 0, ..LEARN },
        kube_system_allow: vec!["corp-* docker.io/corp/*".into(), "legacy-*".into(), "aks-extra @aks".into()],
        ..BaselinesConfig::default()
    };
    let mut detector = KubeSystemContainer::new(&config);
    assert!(
        observe(&mut detector, &create("deployments", 10, deployment("corp-logger", "log", "corp/log:1"))).is_empty()
    );
    assert_eq!(observe(&mut detector, &create("deployments", 11, deployment("logger", "log", "corp/log:1"))).len(), 1);
    // The configured name runs another registry's image: not allowed.
    let moved = deployment("corp-logger", "log", "evil.io/corp/log:1");
    assert_eq!(observe(&mut detector, &create("deployments", 12, moved)).len(), 1);
    // A name alone allows any image; a shipped @set is usable in configuration.
    assert!(observe(&mut detector, &create("deployments", 13, deployment("legacy-x", "x", "any/x:1"))).is_empty());
    let aks = deployment("aks-extra", "x", "mcr.microsoft.com/oss/x:1");
    assert!(observe(&mut detector, &create("deployments", 14, aks)).is_empty());
    let not_aks = deployment("aks-extra", "x", "docker.io/oss/x:1");
    assert_eq!(observe(&mut detector, &create("deployments", 15, not_aks)).len(), 1);
}

#[test]
fn a_listed_kube_system_workload_moved_to_another_image_fires() {
    let config =
        BaselinesConfig { kube_system: BaselineConfig { learning_secs: 0, ..LEARN }, ..BaselinesConfig::default() };
    let mut detector = KubeSystemContainer::new(&config);
    let proxy = |image: &str| {
        pod("kube-proxy-8xk2q", Some("kube-proxy-"), json!({"k8s-app": "kube-proxy"}), "kube-proxy", image)
    };
    for (at, image) in [
        (1, "registry.k8s.io/kube-proxy:v1.31.0"),
        (2, "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/kube-proxy:v1.31.0-eksbuild.2"),
        (3, "mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.31.1"),
        (4, "gke.gcr.io/kube-proxy-amd64:v1.31.1-gke.1"),
    ] {
        assert!(observe(&mut detector, &create("pods", at, proxy(image))).is_empty(), "{image}");
    }
    for (at, image) in [
        (5, "evil.io/kube-proxy:v1.31.0"),
        (6, "docker.io/kube-proxy:v1.31.0"),
        (7, "registry.k8s.io.evil.io/kube-proxy:v1"),
        (8, "111122223333.dkr.ecr.us-west-2.amazonaws.com/eks/kube-proxy:v1"),
        // The add-on registries also serve general-purpose images, which must not pass under an add-on's name.
        (9, "registry.k8s.io/e2e-test-images/agnhost:2.52"),
        (10, "mcr.microsoft.com/azure-cli:2.67.0"),
    ] {
        let found = observe(&mut detector, &create("pods", at, proxy(image)));
        assert_eq!(found.len(), 1, "{image}");
        assert_eq!(found[0].image.as_deref(), Some(image));
    }
    let coredns = deployment("coredns", "coredns", "attacker/coredns:1.11.1");
    assert_eq!(observe(&mut detector, &create("deployments", 11, coredns)).len(), 1);
    let metrics =
        deployment("metrics-server", "metrics-server", "registry.k8s.io/metrics-server/metrics-server:v0.7.2");
    assert!(observe(&mut detector, &create("deployments", 12, metrics)).is_empty());
}

#[test]
fn every_shipped_allow_entry_names_its_images() {
    let shipped = super::detector::parse_kube_system_allow(&crate::lists::parse_list(include_str!(
        "../../../data/kube_system_workloads.txt"
    )));
    assert!(shipped.len() > 40);
    for entry in shipped {
        let images = entry.images.unwrap_or_default();
        assert!(!images.is_empty(), "{} allows no image or any image", entry.workload);
        assert!(images.iter().all(|i| i.contains('/') && !i.starts_with('*')), "{}: {images:?}", entry.workload);
    }
}

fn cloud(identity: &str, kind: &str, operation: &str, at_ms: i64) -> CloudActivity {
    CloudActivity {
        id: format!("{identity}-{operation}-{at_ms}"),
        provider: "azure".into(),
        identity: identity.into(),
        identity_type: Some(kind.into()),
        operation: operation.into(),
        resource: Some("/subscriptions/s/resourceGroups/rg".into()),
        result: Some("Succeeded".into()),
        caller_ip: None,
        timestamp_ms: at_ms,
        raw: "{}".into(),
    }
}

#[test]
fn a_managed_identity_fires_on_a_cloud_operation_outside_its_profile() {
    let config = BaselinesConfig { cloud_identities: LEARN, ..BaselinesConfig::default() };
    let mut detector = AbnormalMiActivity::new(&config);
    let mut see = |event: CloudActivity| detector.observe(&Event::Cloud(&event));
    assert!(
        see(cloud("mi-autoscaler", "ManagedIdentity", "Microsoft.Compute/virtualMachineScaleSets/write", 0)).is_empty()
    );
    assert!(
        see(cloud("mi-autoscaler", "ManagedIdentity", "Microsoft.Compute/virtualMachineScaleSets/write", 700_000))
            .is_empty()
    );
    let found = see(cloud("mi-autoscaler", "ManagedIdentity", "Microsoft.KeyVault/vaults/secrets/read", 700_001));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].details["identity"], "mi-autoscaler");
    // A person's account is not an add-on identity.
    assert!(see(cloud("alice@example.com", "User", "a", 0)).is_empty());
    assert!(see(cloud("alice@example.com", "User", "b", 900_000)).is_empty());
}
