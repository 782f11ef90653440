//! Control-plane detection over a realistic audit mix, and the state it holds. Prints figures; asserts nothing.
//!
//! 1. Memory: N pods (default 10 000, ~2 KB RequestResponse creates in 500 namespaces, each with a Service) and
//!    M service accounts (default 2 000, each with 20 learned operations) fed to a fresh engine; a counting
//!    allocator gives the bytes the windowed state (cluster-state table, baselines) keeps.
//! 2. Throughput on one thread: Avro decode + the whole control-plane catalogue for a mix of 90 % get/list/watch
//!    at Metadata level and 10 % RequestResponse creates of pods and Deployments (2–8 KB).
//!
//!   cargo run --release -p palisade-bench --bin audit-state [pods] [service accounts]

use std::time::Instant;

use palisade_bench::live;
use palisade_detect::{DetectConfig, Engine, Event};
use palisade_schemas::{AuditEvent, Codec};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: palisade_bench::Counting = palisade_bench::Counting;

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn timestamp(seconds: i64) -> String {
    format!("2026-11-27T{:02}:{:02}:{:02}Z", seconds / 3600 % 24, seconds / 60 % 60, seconds % 60)
}

fn event(n: i64, user: &str, verb: &str, resource: &str, namespace: &str, object: Option<Value>) -> AuditEvent {
    let level = if object.is_some() { "RequestResponse" } else { "Metadata" };
    let mut event = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": format!("bench-{n}"), "level": level,
        "stage": "ResponseComplete", "verb": verb, "requestURI": format!("/api/v1/namespaces/{namespace}/{resource}"),
        "user": {"username": user, "groups": ["system:authenticated"]}, "sourceIPs": ["10.0.0.7"],
        "userAgent": "kubectl/v1.31.0 (linux/amd64) kubernetes/abc", "objectRef": {"resource": resource, "namespace": namespace},
        "responseStatus": {"code": 200}, "requestReceivedTimestamp": timestamp(n / 100), "stageTimestamp": timestamp(n / 100)});
    if let Some(object) = object {
        event["requestObject"] = object.clone();
        event["responseObject"] = object;
        event["responseStatus"]["code"] = json!(201);
    }
    AuditEvent::from_k8s_json(&event, "bench").unwrap()
}

/// A pod of about `size` bytes of JSON (env variables pad it, as real manifests are padded by env and annotations).
fn pod(name: &str, namespace: &str, app: &str, size: usize) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app, "tier": "backend"}},
        "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{app}:1.4.2"),
            "ports": [{"containerPort": 8080}], "env": [],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
            "volumes": [{"name": "config", "configMap": {"name": format!("{app}-config")}}]}});
    let mut index = 0;
    while pod.to_string().len() < size {
        pod["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": format!("SETTING_{index}"), "value": "a-typical-value-of-thirty-bytes"}));
        index += 1;
    }
    pod
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pods: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let accounts: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);

    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let mut n = 0;
    let mut feed = |engine: &Engine, e: AuditEvent| {
        n += 1;
        engine.process(&Event::Audit(&e), 0).len()
    };
    let before = live();
    for i in 0..pods {
        let namespace = format!("team-{}", i % 500);
        let app = format!("svc-{}", i % 2000);
        feed(
            &engine,
            event(
                i,
                "system:serviceaccount:kube-system:replicaset-controller",
                "create",
                "pods",
                &namespace,
                Some(pod(&format!("{app}-{i}"), &namespace, &app, 2048)),
            ),
        );
    }
    for i in 0..500 {
        let namespace = format!("team-{i}");
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}"), "namespace": namespace},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": format!("svc-{i}")}}});
        feed(&engine, event(pods + i, "deployer", "create", "services", &namespace, Some(service)));
    }
    let resources = [
        "pods",
        "configmaps",
        "secrets",
        "services",
        "endpoints",
        "events",
        "deployments",
        "replicasets",
        "jobs",
        "leases",
    ];
    for account in 0..accounts {
        let namespace = format!("team-{}", account % 500);
        let user = format!("system:serviceaccount:{namespace}:sa-{account}");
        for op in 0..20 {
            let verb = ["get", "list"][op % 2];
            feed(
                &engine,
                event(pods + 500 + account * 20 + op as i64, &user, verb, resources[op / 2], &namespace, None),
            );
        }
    }
    let state_bytes = live() - before;
    let keys = engine.window_keys();
    println!("state after {pods} pods, 500 services, {accounts} service accounts x 20 operations:");
    println!("  windowed state (cluster table + baselines): {:.1} MiB", mib(state_bytes));
    for (id, count) in keys.iter().filter(|(_, count)| *count > 0) {
        println!("    {id}: {count} keys");
    }

    // Throughput: a fresh engine, events pre-encoded as on the topic.
    let codec = Codec::<AuditEvent>::new().unwrap();
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let mut mix = Vec::new();
    for i in 0..10_000i64 {
        let namespace = format!("team-{}", i % 50);
        let user = format!("system:serviceaccount:{namespace}:sa-{}", i % 200);
        let e = match i % 10 {
            0 => event(
                i,
                "deployer",
                "create",
                "pods",
                &namespace,
                Some(pod(&format!("p-{i}"), &namespace, "web", 2048 + (i as usize % 4) * 1536)),
            ),
            1..=4 => event(i, &user, "get", resources[i as usize % resources.len()], &namespace, None),
            5..=7 => event(i, &user, "list", resources[i as usize % resources.len()], &namespace, None),
            _ => event(i, &user, "watch", resources[i as usize % resources.len()], &namespace, None),
        };
        mix.push(codec.encode(&e).unwrap());
    }
    let mut alerts = 0;
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for bytes in &mix {
            let decoded = codec.decode(bytes).unwrap();
            alerts += engine.process(&Event::Audit(&decoded), 0).len();
        }
    }
    let elapsed = started.elapsed();
    let events = (mix.len() * rounds) as f64;
    println!(
        "throughput: {:.0} audit events/s on one thread (decode + whole control-plane catalogue; 90 % get/list/watch at Metadata, 10 % 2-8 KB creates; {alerts} detections), {:.1} µs/event",
        events / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / events
    );
    let started = Instant::now();
    for _ in 0..rounds {
        for bytes in &mix {
            std::hint::black_box(codec.decode(bytes).unwrap());
        }
    }
    println!("  of which Avro decode alone: {:.1} µs/event", started.elapsed().as_secs_f64() * 1e6 / events);
    // Where detection time goes: the Metadata reads and the creates apart (decoded once, detection only).
    let decoded: Vec<AuditEvent> = mix.iter().map(|bytes| codec.decode(bytes).unwrap()).collect();
    for (label, creates) in [("get/list/watch at Metadata", false), ("2-8 KB creates", true)] {
        let part: Vec<&AuditEvent> = decoded.iter().filter(|e| (e.verb == "create") == creates).collect();
        let started = Instant::now();
        for _ in 0..rounds {
            for event in &part {
                std::hint::black_box(engine.process(&Event::Audit(event), 0).len());
            }
        }
        let per = started.elapsed().as_secs_f64() * 1e6 / (part.len() * rounds) as f64;
        println!("  detection only, {label}: {per:.1} µs/event");
    }
}
