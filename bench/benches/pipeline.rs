//! Throughput of the per-event work: Avro encode/decode of the topic records, and the detection engine plus
//! enrichment over a real audit event (a privileged pod create, which fires) and a harmless one (which does not).

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use palisade_detect::{DetectConfig, Engine, Event};
use palisade_enrich::{EnrichConfig, Enricher};
use palisade_schemas::{AuditEvent, Codec, NodeEvent};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../schemas/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn corpus_audit(name: &str) -> AuditEvent {
    let path = format!("{}/../../shared/corpus/falco_k8s_audit_traces/{name}", env!("CARGO_MANIFEST_DIR"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    AuditEvent::from_k8s_json(&json, "bench").unwrap()
}

/// A pod create of about 5 KB (its environment makes the size), logged at RequestResponse.
fn pod_create(n: usize) -> AuditEvent {
    let env: Vec<serde_json::Value> = (0..120)
        .map(|i| serde_json::json!({"name": format!("SETTING_{i}"), "value": "a-typical-value-of-thirty-bytes"}))
        .collect();
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("web-{n}"), "namespace": "shop", "labels": {"app": "web", "tier": "backend"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/web:1.4.2", "env": env,
            "ports": [{"containerPort": 8080}], "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}}]}});
    let event = serde_json::json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": format!("bench-{n}"),
        "level": "RequestResponse", "stage": "ResponseComplete", "verb": "create",
        "requestURI": "/api/v1/namespaces/shop/pods", "user": {"username": "dev"}, "sourceIPs": ["10.0.0.7"],
        "objectRef": {"resource": "pods", "namespace": "shop", "name": format!("web-{n}")},
        "responseStatus": {"code": 201}, "requestObject": pod.clone(), "responseObject": pod,
        "requestReceivedTimestamp": "2026-12-06T10:00:00Z", "stageTimestamp": "2026-12-06T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "bench").unwrap()
}

fn codecs(c: &mut Criterion) {
    let node: NodeEvent = serde_json::from_str(&fixture("node_event.v1.json")).unwrap();
    let codec = Codec::<NodeEvent>::new().unwrap();
    let bytes = codec.encode(&node).unwrap();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("NodeEvent encode", |b| b.iter(|| codec.encode(black_box(&node)).unwrap()));
    group.bench_function("NodeEvent encode (apache-avro serde path)", |b| {
        b.iter(|| codec.encode_generic(black_box(&node)).unwrap())
    });
    group.bench_function("NodeEvent decode", |b| b.iter(|| codec.decode(black_box(&bytes)).unwrap()));
    let audit = corpus_audit("create_nginx_pod_privileged.json");
    let audit_codec = Codec::<AuditEvent>::new().unwrap();
    let audit_bytes = audit_codec.encode(&audit).unwrap();
    group.bench_function("AuditEvent decode (privileged pod, RequestResponse)", |b| {
        b.iter(|| audit_codec.decode(black_box(&audit_bytes)).unwrap())
    });
    group.finish();
}

fn detection(c: &mut Criterion) {
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let enricher = Enricher::new("bench", &EnrichConfig::default(), &DetectConfig::default()).expect("default config");
    let firing = corpus_audit("create_nginx_pod_privileged.json");
    let quiet = corpus_audit("create_configmap.json");
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(1));
    group.bench_function("audit event that fires, + enrich", |b| {
        b.iter(|| {
            for detection in engine.process(&Event::Audit(black_box(&firing)), 0) {
                black_box(enricher.enrich(detection));
            }
        })
    });
    group.bench_function("audit event that does not fire", |b| {
        b.iter(|| engine.process(&Event::Audit(black_box(&quiet)), 0).len())
    });
    let node: NodeEvent = serde_json::from_str(&fixture("node_event.v1.json")).unwrap();
    group.bench_function("node exec event", |b| b.iter(|| engine.process(&Event::Node(black_box(&node)), 0).len()));
    // Distinct events, as a stream has: the units share one parse of an event's pod template, not of the last one.
    let creates: Vec<AuditEvent> = (0..64).map(pod_create).collect();
    group.throughput(Throughput::Elements(creates.len() as u64));
    group.bench_function("5 KB pod creates that do not fire", |b| {
        b.iter(|| creates.iter().map(|create| engine.process(&Event::Audit(black_box(create)), 0).len()).sum::<usize>())
    });
    group.finish();
}

/// The realistic node mix (`palisade_bench::node_mix`): 1000 events over 100 containers of one node, Avro-encoded.
fn node_mix() -> Vec<Vec<u8>> {
    let codec = Codec::<NodeEvent>::new().unwrap();
    palisade_bench::node_mix(1000, 1, 100).iter().map(|event| codec.encode(event).unwrap()).collect()
}

fn node_detection(c: &mut Criterion) {
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let codec = Codec::<NodeEvent>::new().unwrap();
    let mix = node_mix();
    let mut group = c.benchmark_group("node");
    group.throughput(Throughput::Elements(mix.len() as u64));
    group.bench_function("decode + whole node catalogue, realistic mix (1000 events)", |b| {
        b.iter(|| {
            let mut fired = 0;
            for bytes in &mix {
                let event = codec.decode(black_box(bytes)).unwrap();
                fired += engine.process(&Event::Node(&event), 0).len();
            }
            fired
        })
    });
    group.finish();
}

criterion_group!(benches, codecs, detection, node_detection);
criterion_main!(benches);
