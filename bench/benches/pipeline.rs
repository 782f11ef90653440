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
    let enricher = Enricher::new("bench", &EnrichConfig::default(), &DetectConfig::default());
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
    group.finish();
}

criterion_group!(benches, codecs, detection);
criterion_main!(benches);
