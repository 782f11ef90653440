use std::sync::Arc;

use palisade_schemas::{AuditEvent, ClusterObject};
use serde_json::{Value, json};

use super::joins::ClusterJoins;
use super::seed::ClusterSeed;
use super::table::hba_trusts_network;
use crate::unit::Event;
use crate::unit::WindowedDetector;

fn event(verb: &str, resource: &str, namespace: Option<&str>, name: &str, object: Option<Value>, n: u32) -> AuditEvent {
    let mut event = json!({"kind": "Event", "auditID": format!("a{n}"), "stage": "ResponseComplete", "verb": verb,
        "requestURI": "/api", "user": {"username": "dev"},
        "objectRef": {"resource": resource, "name": name}, "responseStatus": {"code": 201},
        "stageTimestamp": format!("2026-11-27T10:00:{:02}Z", n % 60)});
    if let Some(namespace) = namespace {
        event["objectRef"]["namespace"] = json!(namespace);
    }
    if resource == "deployments" {
        event["objectRef"]["apiGroup"] = json!("apps");
    }
    if let Some(object) = object {
        event["requestObject"] = object;
    }
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

fn service(namespace: &str, name: &str, kind: &str, port: i64, selector: Value, n: u32) -> AuditEvent {
    let object = json!({"kind": "Service", "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": kind, "ports": [{"port": port}], "selector": selector}});
    event("create", "services", Some(namespace), name, Some(object), n)
}

fn postgres(namespace: &str, name: &str, env: Value, volumes: Value, n: u32) -> AuditEvent {
    let object = json!({"kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "db", "image": "postgres:16", "env": env}], "volumes": volumes}}}});
    event("create", "deployments", Some(namespace), name, Some(object), n)
}

fn fired(joins: &mut ClusterJoins, event: &AuditEvent) -> Vec<(&'static str, String)> {
    joins
        .observe_all(&Event::Audit(event))
        .into_iter()
        .map(|(meta, f)| (meta.id, f.details["reason"].clone()))
        .collect()
}

fn fired_types(joins: &mut ClusterJoins, event: &AuditEvent) -> Vec<&'static str> {
    joins.observe_all(&Event::Audit(event)).into_iter().map(|(meta, _)| meta.id).collect()
}

const TRUST_ENV: &str = "POSTGRES_HOST_AUTH_METHOD";

#[test]
fn postgres_trust_fires_on_whichever_of_service_and_pods_comes_second() {
    // Pods first, then the Service.
    let mut joins = ClusterJoins::new();
    let env = json!([{"name": TRUST_ENV, "value": "trust"}]);
    assert!(fired(&mut joins, &postgres("db", "pg", env.clone(), json!([]), 1)).is_empty());
    let found = fired(&mut joins, &service("db", "pg-public", "LoadBalancer", 5432, json!({"app": "pg"}), 2));
    assert_eq!(found, vec![("K8S_ExposedPostgresTrustAuth", format!("{TRUST_ENV}=trust in the pod template"))]);
    // Once: another change to the same pods does not fire again.
    assert!(fired(&mut joins, &postgres("db", "pg", env.clone(), json!([]), 3)).is_empty());

    // The Service first, then the pods.
    let mut joins = ClusterJoins::new();
    assert!(fired(&mut joins, &service("db", "pg-public", "LoadBalancer", 5432, json!({"app": "pg"}), 1)).is_empty());
    assert_eq!(fired(&mut joins, &postgres("db", "pg", env, json!([]), 2)).len(), 1);
}

#[test]
fn postgres_look_alikes_do_not_fire() {
    let mut joins = ClusterJoins::new();
    let trust = json!([{"name": TRUST_ENV, "value": "trust"}]);
    let password = json!([{"name": TRUST_ENV, "value": "scram-sha-256"}]);
    fired(&mut joins, &postgres("db", "pg", trust.clone(), json!([]), 1));
    fired(&mut joins, &postgres("db", "safe", password, json!([]), 2));
    // Internal only; selects other pods; another namespace; a password-protected database.
    assert!(fired(&mut joins, &service("db", "internal", "ClusterIP", 5432, json!({"app": "pg"}), 3)).is_empty());
    assert!(fired(&mut joins, &service("db", "web", "LoadBalancer", 80, json!({"app": "web"}), 4)).is_empty());
    assert!(fired(&mut joins, &service("other", "pg", "LoadBalancer", 5432, json!({"app": "pg"}), 5)).is_empty());
    assert!(fired(&mut joins, &service("db", "safe", "LoadBalancer", 5432, json!({"app": "safe"}), 6)).is_empty());
}

#[test]
fn trust_from_a_configmap_fires_when_the_configmap_arrives_last() {
    let mut joins = ClusterJoins::new();
    let volumes = json!([{"name": "hba", "configMap": {"name": "pg-hba"}}]);
    fired(&mut joins, &postgres("db", "pg", json!([]), volumes, 1));
    assert!(fired(&mut joins, &service("db", "pg", "LoadBalancer", 5432, json!({"app": "pg"}), 2)).is_empty());
    let hba = json!({"kind": "ConfigMap", "metadata": {"name": "pg-hba"},
        "data": {"pg_hba.conf": "local all all peer\nhost all all 0.0.0.0/0 trust\n"}});
    let found = fired(&mut joins, &event("create", "configmaps", Some("db"), "pg-hba", Some(hba), 3));
    assert_eq!(found.len(), 1);
    assert!(found[0].1.contains("ConfigMap pg-hba"), "{found:?}");
    // The exposure goes away with the Service, and a new one fires again.
    fired(&mut joins, &event("delete", "services", Some("db"), "pg", None, 4));
    assert_eq!(fired(&mut joins, &service("db", "pg", "LoadBalancer", 5432, json!({"app": "pg"}), 5)).len(), 1);
}

#[test]
fn pg_hba_lines() {
    assert!(hba_trusts_network("host all all 0.0.0.0/0 trust"));
    assert!(hba_trusts_network("hostssl all all 10.0.0.0 255.0.0.0 trust"));
    assert!(!hba_trusts_network("local all all trust"), "a local socket is not the network");
    assert!(!hba_trusts_network("host all all 0.0.0.0/0 scram-sha-256"));
    assert!(!hba_trusts_network("# host all all 0.0.0.0/0 trust"));
}

fn gateway(kind: &str, n: u32) -> AuditEvent {
    let object = json!({"kind": "Service", "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system",
        "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"}},
        "spec": {"type": kind, "ports": [{"port": 80}, {"port": 443}], "selector": {"istio": "ingressgateway"}}});
    event("create", "services", Some("istio-system"), "istio-ingressgateway", Some(object), n)
}

fn namespace(name: &str, n: u32) -> AuditEvent {
    event("create", "namespaces", None, name, Some(json!({"kind": "Namespace", "metadata": {"name": name}})), n)
}

#[test]
fn kubeflow_fires_when_the_gateway_is_public_in_a_cluster_that_runs_it() {
    let mut joins = ClusterJoins::new();
    assert!(fired_types(&mut joins, &gateway("LoadBalancer", 1)).is_empty(), "no Kubeflow yet");
    assert!(fired_types(&mut joins, &namespace("shop", 2)).is_empty());
    assert_eq!(fired_types(&mut joins, &namespace("kubeflow", 3)), vec!["K8S_ExposedKubeflow"]);
    assert!(fired_types(&mut joins, &gateway("LoadBalancer", 4)).is_empty(), "once");

    // Kubeflow first (a pipeline workload), then the gateway; a ClusterIP gateway is the look-alike.
    let mut joins = ClusterJoins::new();
    let pipeline = json!({"kind": "Deployment", "metadata": {"name": "ml-pipeline", "namespace": "ml"},
        "spec": {"template": {"metadata": {"labels": {"app": "ml-pipeline"}},
        "spec": {"containers": [{"name": "api", "image": "gcr.io/ml-pipeline/api-server:2.0.5"}]}}}});
    fired_types(&mut joins, &event("create", "deployments", Some("ml"), "ml-pipeline", Some(pipeline), 1));
    assert!(fired_types(&mut joins, &gateway("ClusterIP", 2)).is_empty());
    assert_eq!(fired_types(&mut joins, &gateway("LoadBalancer", 3)), vec!["K8S_ExposedKubeflow"]);
}

#[test]
fn the_table_survives_a_snapshot_and_restore() {
    let mut joins = ClusterJoins::new();
    fired(&mut joins, &postgres("db", "pg", json!([{"name": TRUST_ENV, "value": "trust"}]), json!([]), 1));
    let mut restored = ClusterJoins::new();
    restored.restore(&joins.snapshot()).unwrap();
    assert_eq!(restored.keys(), 1);
    assert_eq!(fired(&mut restored, &service("db", "pg", "LoadBalancer", 5432, json!({"app": "pg"}), 2)).len(), 1);
}

#[test]
fn an_internal_load_balancer_exposes_nothing() {
    let mut joins = ClusterJoins::new();
    fired(&mut joins, &postgres("db", "pg", json!([{"name": TRUST_ENV, "value": "trust"}]), json!([]), 1));
    let object = json!({"kind": "Service", "metadata": {"name": "pg", "namespace": "db",
        "annotations": {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 5432}], "selector": {"app": "pg"}}});
    assert!(fired(&mut joins, &event("create", "services", Some("db"), "pg", Some(object), 2)).is_empty());
    // The same Service without the annotation is public.
    assert_eq!(fired(&mut joins, &service("db", "pg", "LoadBalancer", 5432, json!({"app": "pg"}), 3)).len(), 1);
}

fn trigger_on_pod(pod_uid: Option<&str>) -> palisade_schemas::NodeEvent {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/node_event.v1.json"))
        .unwrap();
    let mut event: palisade_schemas::NodeEvent = serde_json::from_str(&text).unwrap();
    let name = crate::detectors::eicar::TEST_TRIGGER_NAME;
    event.kind = palisade_schemas::NodeEventKind::Exec;
    event.executable = Some(format!("/tmp/{name}"));
    event.argv = vec![name.to_owned()];
    event.pod_uid = pod_uid.map(str::to_owned);
    event
}

#[test]
fn node_alerts_get_the_pod_their_event_ran_in_before_exceptions_apply() {
    use crate::config::{DetectConfig, Exception, RuleConfig};
    use crate::engine::Engine;

    // The create's response holds the UID the API server gave the pod.
    let pod = json!({"kind": "Pod", "metadata": {"name": "web-5d78c-x7x2p", "namespace": "shop", "uid": "u-1",
        "labels": {"app": "web"}, "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d78c"}]},
        "spec": {"containers": [{"name": "app", "image": "shop/web:1.2"}]}});
    let mut create = event("create", "pods", Some("shop"), "", Some(pod.clone()), 1);
    create.response_object = Some(pod.to_string());
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    engine.process(&Event::Audit(&create), 0);
    let alerts = engine.process(&Event::Node(&trigger_on_pod(Some("u-1"))), 0);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].namespace.as_deref(), Some("shop"));
    assert_eq!(alerts[0].pod.as_deref(), Some("web-5d78c-x7x2p"));
    assert_eq!(alerts[0].workload.as_deref(), Some("ReplicaSet/web-5d78c"));
    assert_eq!(alerts[0].image.as_deref(), Some("shop/web:1.2"));
    assert_eq!(alerts[0].pod_labels.get("app").map(String::as_str), Some("web"));
    // Another pod's event gets no context.
    assert_eq!(engine.process(&Event::Node(&trigger_on_pod(Some("u-2"))), 0)[0].namespace, None);

    // A namespace exception now applies to node alerts; after the pod is deleted the context is gone.
    let mut config = DetectConfig::default();
    let exception = Exception { namespace: Some("shop".into()), reason: "test".into(), ..Exception::default() };
    config.rules.insert("K8S.NODE_EICAR".into(), RuleConfig { exceptions: vec![exception], ..RuleConfig::default() });
    let engine = Engine::new(&config).unwrap();
    engine.process(&Event::Audit(&create), 0);
    assert!(engine.process(&Event::Node(&trigger_on_pod(Some("u-1"))), 0).is_empty(), "excepted by namespace");
    engine.process(&Event::Audit(&event("delete", "pods", Some("shop"), "web-5d78c-x7x2p", None, 2)), 0);
    assert_eq!(engine.process(&Event::Node(&trigger_on_pod(Some("u-1"))), 0).len(), 1, "deleted pod: no context");
}

#[test]
fn node_alerts_take_the_cri_runtimes_pod_and_image_when_the_table_has_not_seen_the_pod() {
    use crate::config::{DetectConfig, Exception, RuleConfig};
    use crate::engine::Engine;

    let mut from_cri = trigger_on_pod(Some("u-unseen"));
    from_cri.pod_namespace = Some("batch".into());
    from_cri.pod_name = Some("report-28711".into());
    from_cri.image = Some("registry.example/batch/report:7".into());
    from_cri.container_name = Some("report".into());
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let alerts = engine.process(&Event::Node(&from_cri), 0);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].namespace.as_deref(), Some("batch"));
    assert_eq!(alerts[0].pod.as_deref(), Some("report-28711"));
    assert_eq!(alerts[0].image.as_deref(), Some("registry.example/batch/report:7"));
    assert_eq!(alerts[0].workload, None, "the CRI labels do not name the controller");

    // The container's own image wins over the table's pod image; the table still gives the workload.
    let pod = json!({"kind": "Pod", "metadata": {"name": "report-28711", "namespace": "batch", "uid": "u-unseen",
        "ownerReferences": [{"kind": "Job", "name": "report"}]},
        "spec": {"containers": [{"name": "report", "image": "batch/report:6"}]}});
    let mut create = event("create", "pods", Some("batch"), "", Some(pod.clone()), 1);
    create.response_object = Some(pod.to_string());
    engine.process(&Event::Audit(&create), 0);
    let alerts = engine.process(&Event::Node(&from_cri), 0);
    assert_eq!(alerts[0].image.as_deref(), Some("registry.example/batch/report:7"));
    assert_eq!(alerts[0].workload.as_deref(), Some("Job/report"));

    // Exceptions by namespace apply to what the CRI runtime said.
    let mut config = DetectConfig::default();
    let exception = Exception { namespace: Some("batch".into()), reason: "test".into(), ..Exception::default() };
    config.rules.insert("K8S.NODE_EICAR".into(), RuleConfig { exceptions: vec![exception], ..RuleConfig::default() });
    let engine = Engine::new(&config).unwrap();
    assert!(engine.process(&Event::Node(&from_cri), 0).is_empty(), "excepted by the CRI namespace");
    from_cri.pod_namespace = Some("other".into());
    assert_eq!(engine.process(&Event::Node(&from_cri), 0).len(), 1, "another namespace is not excepted");
}

#[test]
fn the_kubernetes_api_baseline_learns_per_workload_through_the_engine() {
    use crate::baseline::BaselineConfig;
    use crate::config::DetectConfig;
    use crate::engine::Engine;

    let pod = json!({"kind": "Pod", "metadata": {"name": "op-7c9-abcde", "namespace": "ops", "uid": "u-op",
        "ownerReferences": [{"kind": "ReplicaSet", "name": "op-7c9"}]},
        "spec": {"containers": [{"name": "manager", "image": "ops/operator:2"}]}});
    let mut create = event("create", "pods", Some("ops"), "", Some(pod.clone()), 1);
    create.response_object = Some(pod.to_string());
    let mut config = DetectConfig::default();
    config.baselines.kubernetes_api = BaselineConfig { learning_secs: 60, ..BaselineConfig::default() };
    let engine = Engine::new(&config).unwrap();
    engine.process(&Event::Audit(&create), 0);
    let connect = |executable: &str, at_ms: i64| {
        let mut event = trigger_on_pod(Some("u-op"));
        event.kind = palisade_schemas::NodeEventKind::NetConnect;
        event.executable = Some(executable.to_owned());
        event.argv = vec![executable.to_owned()];
        event.in_container = true;
        event.timestamp_ms = at_ms;
        event.net = Some(palisade_schemas::NetDetail {
            family: "inet".into(),
            protocol: "tcp".into(),
            src_addr: None,
            src_port: None,
            dst_addr: Some("10.96.0.1".into()),
            dst_port: Some(443),
            payload_head: None,
        });
        engine.process(&Event::Node(&event), at_ms)
    };
    let api = |alerts: Vec<palisade_schemas::Detection>| {
        alerts.into_iter().filter(|a| a.alert_type == "K8S.NODE_KubernetesAPI").collect::<Vec<_>>()
    };
    assert!(api(connect("/manager", 1_000)).is_empty(), "learning");
    assert!(api(connect("/manager", 120_000)).is_empty(), "known");
    let fired = api(connect("/usr/bin/python3", 121_000));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].workload.as_deref(), Some("ReplicaSet/op-7c9"));
    assert_eq!(fired[0].details["process"], "/usr/bin/python3");
}

fn seeded(
    kind: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
    object: Value,
) -> ClusterObject {
    ClusterObject {
        cluster: "c".into(),
        kind: kind.into(),
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        namespace: namespace.map(str::to_owned),
        name: name.into(),
        uid: format!("uid-{name}"),
        resource_version: "9".into(),
        object: object.to_string(),
    }
}

#[test]
fn objects_from_the_list_watch_complete_a_join_and_their_tombstones_take_them_back() {
    let seed = Arc::new(ClusterSeed::new());
    let mut joins = ClusterJoins::new();
    joins.attach_shared(&(Arc::clone(&seed) as _));
    // A trusting database that existed before Palisade: no audit event names it, the list showed it.
    let deployment = json!({"kind": "Deployment", "metadata": {"name": "pg", "namespace": "db"},
        "spec": {"template": {"metadata": {"labels": {"app": "pg"}},
        "spec": {"containers": [{"name": "db", "image": "postgres:16", "env": [{"name": TRUST_ENV, "value": "trust"}]}]}}}});
    seed.apply(&seeded("Deployment", "apps", "deployments", Some("db"), "pg", deployment));
    let found = fired(&mut joins, &service("db", "pg-public", "LoadBalancer", 5432, json!({"app": "pg"}), 1));
    assert_eq!(found, vec![("K8S_ExposedPostgresTrustAuth", format!("{TRUST_ENV}=trust in the pod template"))]);
    // Another cluster's seed does not count.
    let mut other = ClusterJoins::new();
    other.attach_shared(&(Arc::clone(&seed) as _));
    let mut elsewhere = service("db", "pg-public", "LoadBalancer", 5432, json!({"app": "pg"}), 2);
    elsewhere.cluster = "other".into();
    assert!(fired(&mut other, &elsewhere).is_empty());
    // Gone from the cluster (a tombstone): a new Service finds nothing to join.
    seed.forget("c/Deployment/db/pg");
    let mut joins = ClusterJoins::new();
    joins.attach_shared(&(Arc::clone(&seed) as _));
    assert!(fired(&mut joins, &service("db", "pg-public", "LoadBalancer", 5432, json!({"app": "pg"}), 3)).is_empty());
    // Keys of another shape or kind take nothing away (nor panic).
    let pod = json!({"metadata": {"name": "pg", "namespace": "db", "uid": "u-pg"}, "spec": {"containers": []}});
    seed.apply(&seeded("Pod", "", "pods", Some("db"), "pg", pod));
    for key in ["", "c/Pod/db", "c/Secret/db/pg", "///", "x/Pod/db/pg", "c/Pod/other/pg"] {
        seed.forget(key);
    }
    assert_eq!(seed.pods(), 1);
}

#[test]
fn a_kubeflow_namespace_from_the_list_watch_makes_the_gateway_an_exposure() {
    let seed = Arc::new(ClusterSeed::new());
    let mut joins = ClusterJoins::new();
    joins.attach_shared(&(Arc::clone(&seed) as _));
    seed.apply(&seeded("Namespace", "", "namespaces", None, "kubeflow", json!({"metadata": {"name": "kubeflow"}})));
    let gateway =
        service("istio-system", "istio-ingressgateway", "LoadBalancer", 443, json!({"istio": "ingressgateway"}), 1);
    assert_eq!(fired_types(&mut joins, &gateway), vec!["K8S_ExposedKubeflow"]);
    // A namespace's tombstone takes only the namespace: its objects' own tombstones take them.
    let service_object = json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"type": "ClusterIP"}});
    seed.apply(&seeded("Service", "", "services", Some("shop"), "web", service_object));
    seed.forget("c/Namespace//shop");
    seed.forget("c/Namespace//kubeflow");
    assert!(seed.read()["c"].services.contains_key("shop/web"));
    assert!(seed.read()["c"].namespaces.is_empty());
}

#[test]
fn a_pod_from_the_list_watch_gives_its_context_until_its_tombstone() {
    let seed = ClusterSeed::new();
    let pod = json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u-web-1", "labels": {"app": "web"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d"}]},
        "spec": {"containers": [{"name": "web", "image": "shop/web:2"}]}});
    seed.apply(&seeded("Pod", "", "pods", Some("shop"), "web-1", pod));
    let context = seed.pod_context("u-web-1").expect("the seeded pod");
    assert_eq!((context.namespace.as_str(), context.pod.as_str()), ("shop", "web-1"));
    assert_eq!((context.workload.as_str(), context.image.as_deref()), ("ReplicaSet/web-7d", Some("shop/web:2")));
    assert_eq!(seed.pods(), 1);
    // Its own record too: a Service may select pods by labels their controller's template does not have.
    assert!(seed.read()["c"].workloads.contains_key("shop/Pod/web-1"));
    let bare = json!({"metadata": {"name": "debug", "namespace": "shop", "uid": "u-debug", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}});
    seed.apply(&seeded("Pod", "", "pods", Some("shop"), "debug", bare));
    assert!(seed.read()["c"].workloads.contains_key("shop/Pod/debug"));
    // Made again under the same name with another UID: only the new one is known.
    let again = json!({"metadata": {"name": "debug", "namespace": "shop", "uid": "u-debug-2"},
        "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}});
    let mut remade = seeded("Pod", "", "pods", Some("shop"), "debug", again);
    remade.uid = "u-debug-2".into();
    seed.apply(&remade);
    assert!(seed.pod_context("u-debug").is_none() && seed.pod_context("u-debug-2").is_some());
    assert_eq!(seed.pods(), 2);
    seed.forget("c/Pod/shop/web-1");
    assert_eq!(seed.pod_context("u-web-1"), None);
}

#[test]
fn an_audit_delete_hides_the_seeds_copy_so_the_exposure_ends_and_fires_again_when_made_again() {
    let seed = Arc::new(ClusterSeed::new());
    let mut joins = ClusterJoins::new();
    joins.attach_shared(&(Arc::clone(&seed) as _));
    let env = json!([{"name": TRUST_ENV, "value": "trust"}]);
    let deployment = |n| postgres("db", "pg", env.clone(), json!([]), n);
    let template = object_of(&deployment(0));
    seed.apply(&seeded("Deployment", "apps", "deployments", Some("db"), "pg", template));
    assert_eq!(fired(&mut joins, &service("db", "pg-public", "LoadBalancer", 5432, json!({"app": "pg"}), 1)).len(), 1);
    // Deleted (the seed's tombstone not read yet): the exposure is over, and a new database made again fires.
    assert!(fired(&mut joins, &event("delete", "deployments", Some("db"), "pg", None, 2)).is_empty());
    assert_eq!(fired(&mut joins, &deployment(3)).len(), 1, "the re-exposure is raised");

    // A Service the audit stream deleted, which the seed still holds, joins nothing new.
    let seed = Arc::new(ClusterSeed::new());
    let mut joins = ClusterJoins::new();
    joins.attach_shared(&(Arc::clone(&seed) as _));
    let public = json!({"metadata": {"name": "pg-public", "namespace": "db"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 5432}], "selector": {"app": "pg"}}});
    seed.apply(&seeded("Service", "", "services", Some("db"), "pg-public", public));
    assert!(fired(&mut joins, &event("delete", "services", Some("db"), "pg-public", None, 1)).is_empty());
    assert!(fired(&mut joins, &deployment(2)).is_empty(), "the deleted Service is not joined");
    // Once the seed's tombstone is read, nothing stays hidden.
    seed.forget("c/Service/db/pg-public");
    fired(&mut joins, &deployment(3));
    assert!(joins.hidden_keys().is_empty());
}

/// The object an audit event of `postgres`/`service` carries, as the list/watch would show it.
fn object_of(event: &AuditEvent) -> Value {
    serde_json::from_str(event.request_object.as_deref().unwrap()).unwrap()
}

#[test]
fn a_config_map_the_audit_stream_shows_without_trust_hides_the_seeds_trusting_copy() {
    let seed = Arc::new(ClusterSeed::new());
    let mut joins = ClusterJoins::new();
    joins.attach_shared(&(Arc::clone(&seed) as _));
    let trusting = json!({"metadata": {"name": "pg-hba", "namespace": "db"},
        "data": {"pg_hba.conf": "host all all 0.0.0.0/0 trust\n"}});
    seed.apply(&seeded("ConfigMap", "", "configmaps", Some("db"), "pg-hba", trusting));
    let volumes = json!([{"name": "hba", "configMap": {"name": "pg-hba"}}]);
    fired(&mut joins, &postgres("db", "pg", json!([]), volumes, 1));
    // A shrunk event of the config map (its values cut) says nothing of its trust: the seed's copy still counts.
    let mut shrunk = event(
        "update",
        "configmaps",
        Some("db"),
        "pg-hba",
        Some(json!({"kind": "ConfigMap",
        "metadata": {"name": "pg-hba"}, "data": {"pg_hba.conf": "# padding cut here"}})),
        2,
    );
    shrunk.annotations.insert("palisade.io/truncated-from-bytes".into(), "300000".into());
    fired(&mut joins, &shrunk);
    assert!(joins.hidden_keys().is_empty(), "a shrunk event hides nothing");
    // The trust is taken out (the seed's newer record not read yet): a LoadBalancer in front exposes nothing.
    let fixed = json!({"kind": "ConfigMap", "metadata": {"name": "pg-hba"},
        "data": {"pg_hba.conf": "host all all 0.0.0.0/0 scram-sha-256\n"}});
    assert!(fired(&mut joins, &event("update", "configmaps", Some("db"), "pg-hba", Some(fixed), 2)).is_empty());
    assert!(fired(&mut joins, &service("db", "pg", "LoadBalancer", 5432, json!({"app": "pg"}), 3)).is_empty());
    // The seed's next version of the config map (trusting again) is shown again.
    let again = json!({"metadata": {"name": "pg-hba", "namespace": "db"},
        "data": {"pg_hba.conf": "host all all 0.0.0.0/0 trust\n"}});
    let mut newer = seeded("ConfigMap", "", "configmaps", Some("db"), "pg-hba", again);
    newer.resource_version = "10".into();
    seed.apply(&newer);
    assert_eq!(fired(&mut joins, &service("db", "pg", "LoadBalancer", 5432, json!({"app": "pg"}), 4)).len(), 1);
}

#[test]
fn a_pod_made_again_under_its_name_leaves_no_old_context_behind() {
    let mut joins = ClusterJoins::new();
    let pod = |uid: &str, n| {
        let object = json!({"kind": "Pod", "metadata": {"name": "pg-0", "namespace": "db", "uid": uid},
            "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}});
        event("create", "pods", Some("db"), "pg-0", Some(object), n)
    };
    fired(&mut joins, &pod("u-1", 1));
    assert!(joins.pod_context("u-1").is_some());
    // A StatefulSet's pod made again: same name, another UID.
    fired(&mut joins, &pod("u-2", 2));
    assert!(joins.pod_context("u-1").is_none(), "the old pod's context is gone");
    assert_eq!(joins.pod_context("u-2").map(|c| c.pod), Some("pg-0".to_owned()));
}
