//! The cluster-state table every detect instance holds (`palisade.cluster.state`, read into the engine's seed):
//! what one object weighs on the topic and in memory, and how fast detect reads it. Prints figures; asserts
//! nothing.
//!
//! N pods (default 150 000: a 5 000-node cluster at 30 pods a node) in 1 000 namespaces, each owned by a
//! ReplicaSet, one container with its status, four labels, as the list/watch writes them (trimmed); one Service
//! and one Deployment per 10 pods. Each record is Avro-encoded as on the topic, then decoded and applied to a
//! fresh engine as `follow` does; a counting allocator gives the bytes the seed keeps.
//!
//!   cargo run --release -p palisade-bench --bin cluster-seed [pods]

use std::time::Instant;

use palisade_bench::live;
use palisade_detect::{DetectConfig, Engine};
use palisade_schemas::{ClusterObject, Codec};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: palisade_bench::Counting = palisade_bench::Counting;

fn record(kind: &str, (group, resource): (&str, &str), namespace: &str, name: &str, object: Value) -> ClusterObject {
    ClusterObject {
        cluster: "prod".into(),
        kind: kind.into(),
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        namespace: Some(namespace.into()),
        name: name.into(),
        uid: object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().into(),
        resource_version: "48213".into(),
        object: object.to_string(),
    }
}

fn labels(app: &str) -> Value {
    json!({"app": app, "tier": "backend", "team": "payments", "pod-template-hash": "7d9f8b6c5"})
}

fn pod(n: usize, namespace: &str, app: &str) -> ClusterObject {
    let name = format!("{app}-7d9f8b6c5-{n:05x}");
    let object = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("3f1c2a9e-5b7d-4c1e-9a0b-{n:012x}"),
            "labels": labels(app), "resourceVersion": "48213",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-7d9f8b6c5"),
                "uid": "7f6d1c1e-0000-4000-8000-000000000001", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{app}:1.4.2"),
            "envFrom": [{"configMapRef": {"name": format!("{app}-env")}}]}],
            "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config")}}],
            "nodeName": format!("node-{}", n % 5000), "serviceAccountName": app},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app",
            "image": format!("registry.example.com/{app}:1.4.2"), "containerID": format!("containerd://{n:064x}")}]}});
    record("Pod", ("", "pods"), namespace, &name, object)
}

fn service(namespace: &str, app: &str) -> ClusterObject {
    let object = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app, "namespace": namespace, "uid": format!("svc-{namespace}-{app}"), "labels": labels(app)},
        "spec": {"type": "ClusterIP", "selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}});
    record("Service", ("", "services"), namespace, app, object)
}

fn deployment(namespace: &str, app: &str) -> ClusterObject {
    let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": namespace, "uid": format!("dep-{namespace}-{app}"), "labels": labels(app)},
        "spec": {"replicas": 10, "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": labels(app)}, "spec": {"containers": [{"name": "app",
                "image": format!("registry.example.com/{app}:1.4.2"), "envFrom": [{"configMapRef": {"name": format!("{app}-env")}}]}],
                "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config")}}]}}}});
    record("Deployment", ("apps", "deployments"), namespace, app, object)
}

fn main() {
    let pods: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(150_000);
    let codec = Codec::<ClusterObject>::new().unwrap();
    let mut records = Vec::with_capacity(pods + pods / 5);
    let (mut pod_bytes, mut other_bytes) = (0usize, 0usize);
    for n in 0..pods {
        let (namespace, app) = (format!("ns-{}", n % 1000), format!("app-{}", n / 10));
        let encoded = codec.encode(&pod(n, &namespace, &app)).unwrap();
        pod_bytes += encoded.len();
        records.push(encoded);
        if n % 10 == 0 {
            for object in [service(&namespace, &app), deployment(&namespace, &app)] {
                let encoded = codec.encode(&object).unwrap();
                other_bytes += encoded.len();
                records.push(encoded);
            }
        }
    }
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let before = live();
    let started = Instant::now();
    for payload in &records {
        engine.apply_cluster_object(&codec.decode(payload).unwrap());
    }
    let elapsed = started.elapsed();
    let kept = live() - before;
    let objects = records.len();
    println!("objects: {pods} pods, {} services and deployments", objects - pods);
    println!(
        "topic: {:.1} MiB of values ({} B a pod, {} B a service or deployment)",
        (pod_bytes + other_bytes) as f64 / 1048576.0,
        pod_bytes / pods.max(1),
        other_bytes / (objects - pods).max(1)
    );
    println!(
        "load (decode + apply): {:.2} s, {:.0} objects/s",
        elapsed.as_secs_f64(),
        objects as f64 / elapsed.as_secs_f64()
    );
    println!(
        "seed in memory: {:.1} MiB, {} B an object (pods known: {})",
        kept as f64 / 1048576.0,
        kept / objects.max(1) as isize,
        engine.cluster_state_pods()
    );
}
