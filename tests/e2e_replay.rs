//! `palisade replay` on real Kafka: audit events on a topic, replayed through a candidate configuration with one
//! added exception and one changed severity, must give exactly that diff — one K8S_PrivilegedContainer alert
//! gone, one K8S_ExposedRedis alert re-rated, nothing else — and the production configuration against itself
//! must give none; a candidate suppression rule shows its alert as suppressed. Nothing is written to Kafka by the
//! replay.

mod common;

use std::process::Command;
use std::time::Duration;

use palisade_schemas::{AuditEvent, Codec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

fn audit(n: u32, resource: &str, namespace: &str, object: Value) -> AuditEvent {
    let event = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": format!("replay-{n}"),
        "level": "RequestResponse", "stage": "ResponseComplete", "verb": "create",
        "requestURI": format!("/api/v1/namespaces/{namespace}/{resource}"), "user": {"username": "dev"},
        "objectRef": {"resource": resource, "namespace": namespace}, "responseStatus": {"code": 201},
        "requestObject": object, "stageTimestamp": format!("2026-12-02T10:00:0{n}Z")});
    AuditEvent::from_k8s_json(&event, "testbed").unwrap()
}

fn pod(name: &str, privileged: bool) -> Value {
    json!({"kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "securityContext": {"privileged": privileged}}]}})
}

fn replay(config: &std::path::Path, topic: &str, candidate: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["replay", "--config", config.to_str().unwrap(), "--topic", topic, "--candidate"])
        .arg(candidate)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code().is_some_and(|c| c < 2), "replay failed: {stderr}");
    (output.status.code().unwrap(), String::from_utf8(output.stdout).unwrap())
}

#[test]
fn one_configuration_change_gives_exactly_its_diff() {
    let kafka = common::env("PALISADE_TEST_KAFKA");
    let topic = format!("t.replay-{}.audit_events", common::run_id());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &kafka).create().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(admin.create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new()))
        .unwrap();

    let events = [
        audit(1, "pods", "team-a", pod("a", true)),
        audit(2, "pods", "team-b", pod("b", true)),
        audit(3, "pods", "team-a", pod("quiet", false)),
        audit(
            4,
            "services",
            "team-a",
            json!({"kind": "Service", "metadata": {"name": "cache"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 6379}], "selector": {"app": "cache"}}}),
        ),
    ];
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &kafka).create().unwrap();
    let codec = Codec::<AuditEvent>::new().unwrap();
    for event in &events {
        let payload = codec.encode(event).unwrap();
        let key = event.partition_key();
        producer.send(BaseRecord::to(&topic).key(&key).payload(&payload)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let production = format!(
        "cluster = \"testbed\"\n[kafka]\nbootstrap_servers = \"{kafka}\"\ncreate_topics = false\n[topics]\naudit_events = \"{topic}\"\n"
    );
    let candidate = format!(
        "{production}\n[detect.rules.\"K8S_PrivilegedContainer\"]\nexceptions = [{{ namespace = \"team-b\", reason = \"build agents\" }}]\n\
         [detect.rules.\"K8S_ExposedRedis\"]\nseverity = \"High\"\n"
    );
    let production_path = dir.path().join("production.toml");
    let candidate_path = dir.path().join("candidate.toml");
    std::fs::write(&production_path, &production).unwrap();
    std::fs::write(&candidate_path, &candidate).unwrap();

    let (code, out) = replay(&production_path, &topic, &candidate_path, &["--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1, "a difference exits 1: {report:#}");
    assert_eq!(report["events"], 4);
    let diff = |t: &str, field: &str| report["by_type"][t][field].as_u64().unwrap_or(0);
    assert_eq!(
        (diff("K8S_PrivilegedContainer", "gone"), diff("K8S_PrivilegedContainer", "unchanged")),
        (1, 1),
        "{report:#}"
    );
    assert_eq!(diff("K8S_ExposedRedis", "severity_changed"), 1, "{report:#}");
    let changes: u64 = report["by_type"]
        .as_object()
        .unwrap()
        .values()
        .map(|d| d["new"].as_u64().unwrap() + d["gone"].as_u64().unwrap() + d["severity_changed"].as_u64().unwrap())
        .sum();
    assert_eq!(changes, 2, "nothing but the two changes: {report:#}");
    let example = report["by_type"]["K8S_PrivilegedContainer"]["examples"][0].as_str().unwrap();
    assert!(example.starts_with("gone:") && example.contains("team-b"), "{example}");

    // The human form, and an offset range that leaves the first event out.
    let (_, text) = replay(&production_path, &topic, &candidate_path, &["--from-offset", "1"]);
    assert!(text.starts_with("replayed 3 events"), "{text}");
    assert!(text.contains("severity Medium → High") || text.contains("→ High"), "{text}");
    // A candidate suppression: the re-run raises the alert, and the rule holds it back.
    let suppressing = format!(
        "{production}\n[[enrich.suppressions]]\nname = \"cache-lb\"\nalert_type = \"K8S_ExposedRedis\"\n\
         namespace = \"team-a\"\nreason = \"known cache load balancer\"\nexpires = \"2099-01-01T00:00:00Z\"\n"
    );
    let suppressing_path = dir.path().join("suppressing.toml");
    std::fs::write(&suppressing_path, &suppressing).unwrap();
    let (code, out) = replay(&production_path, &topic, &suppressing_path, &["--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1, "{report:#}");
    let diff = |t: &str, field: &str| report["by_type"][t][field].as_u64().unwrap_or(0);
    assert_eq!((diff("K8S_ExposedRedis", "suppressed"), diff("K8S_ExposedRedis", "gone")), (1, 0), "{report:#}");
    assert_eq!(diff("K8S_PrivilegedContainer", "unchanged"), 2, "{report:#}");
    // Production against itself: no difference, exit 0.
    let (code, text) = replay(&production_path, &topic, &production_path, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("no difference"), "{text}");
}
