//! Pod context from the real kube-apiserver: `palisade enrich` lists and watches pods with a service-account
//! token bound to the ClusterRole the manifests ship (`deploy/k8s/base/rbac.yaml`), and completes node alerts
//! that reach it without their pod:
//! - by pod UID, and the image by the container's ID in the pod status;
//! - for a container whose pod appears only after its detection (the bounded wait), by container ID;
//! - not at all for a pod that never appears: the alert is sent when the wait ends with the fields marked
//!   unknown, and a host alert sent after it is not held behind it;
//! - a detect exception by namespace holds back an alert whose namespace only enrich found.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palisade_schemas::{Alert, Codec, Detection};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

const METRICS: &str = "127.0.0.1:19476";
const WAIT_MS: u64 = 5000;

fn detection(id: &str, alert_type: &str, pod_uid: Option<&str>, container_id: &str) -> Detection {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/detection.v2.json")).unwrap();
    let mut detection: Detection = serde_json::from_str(&text).unwrap();
    detection.id = id.to_owned();
    detection.alert_type = alert_type.to_owned();
    detection.pod_uid = pod_uid.map(str::to_owned);
    detection.container_id = Some(container_id.to_owned());
    detection.timestamp_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    detection
}

fn metric(name_and_labels: &str) -> Option<f64> {
    let text = reqwest::blocking::get(format!("http://{METRICS}/metrics")).and_then(|r| r.text()).ok()?;
    text.lines().find(|line| line.starts_with(name_and_labels))?.rsplit(' ').next()?.parse().ok()
}

/// Reads the enriched topic from the start until every wanted ID was seen (then a little longer, so an alert
/// that should be absent had its chance), with each record's timestamp.
fn read_enriched(topic: &str, wanted: &[&str], timeout: Duration) -> BTreeMap<String, (Alert, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("e2e-enriched-{}", common::run_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let codec = Codec::<Alert>::new().unwrap();
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + timeout;
    let mut extra: Option<Instant> = None;
    while Instant::now() < deadline && extra.is_none_or(|until| Instant::now() < until) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200))
            && let Some(payload) = message.payload()
        {
            let alert = codec.decode(payload).expect("enriched alerts are Avro");
            let at = message.timestamp().to_millis().unwrap_or_default();
            seen.insert(alert.id.clone(), (alert, at));
        }
        if extra.is_none() && wanted.iter().all(|id| seen.contains_key(*id)) {
            extra = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    seen
}

#[test]
fn enrich_completes_node_alerts_from_the_watched_pods_and_waits_a_bounded_time() {
    let mut stack = common::Stack::new("ctx");
    let run = stack.run.clone();
    let namespace = format!("ctx-{}", run.replace('-', "").chars().rev().take(12).collect::<String>());
    let api = common::apiserver();
    common::create_namespace(&api, &namespace);
    let container = |n: u8| format!("{:064x}", u128::from(n) << 64 | u128::from(std::process::id()));
    let web = common::create_started_pod(
        &api,
        &namespace,
        "web-7d4b9-x2x",
        Some("web-7d4b9"),
        &[("app", "shop/web:1.2", &container(1)), ("proxy", "envoy:1.30", &container(2))],
    );

    let dir = tempfile::tempdir().unwrap();
    let after = format!(
        "context_wait_ms = {WAIT_MS}\n[[detect.rules.\"K8S.NODE_ReverseShell\".exceptions]]\n\
         namespace = \"{namespace}\"\nreason = \"the test namespace's shells are expected\"\n"
    );
    let config = common::enrich_kubernetes_config(
        dir.path(),
        &api,
        (&namespace, &run),
        ("[enrich]\ndedup_window_secs = 0\n", &after),
    );
    stack.set("PALISADE_CONFIG", config.to_str().unwrap());
    stack.set("PALISADE__METRICS_LISTEN_ADDR", METRICS);
    stack.start(&["enrich"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric("palisade_enrich_watched_pods{state=\"synced\"}") != Some(1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        metric("palisade_enrich_watched_pods{state=\"synced\"}"),
        Some(1.0),
        "the pod watch never synced:\n{}",
        stack.log("enrich")
    );

    let sender = common::DetectionSender::new(&stack.topic("detections"));
    let send = |detection: &Detection| sender.send(detection);
    let id = |name: &str| format!("{run}-{name}");
    // Known pod, found by its UID; the image is that of the container the event ran in.
    send(&detection(&id("known"), "K8S.NODE_SuspectDownload", Some(&web), &container(2)));
    // Excepted by namespace once enrich knows it, and a look-alike of another type that is not.
    send(&detection(&id("excepted"), "K8S.NODE_ReverseShell", Some(&web), &container(1)));
    send(&detection(&id("not-excepted"), "K8S.NODE_Webshell", Some(&web), &container(1)));
    // A container whose pod is created after its detection arrived: found within the wait, by container ID.
    send(&detection(&id("late"), "K8S.NODE_SuspectDownload", None, &container(3)));
    std::thread::sleep(Duration::from_millis(1000));
    common::create_started_pod(&api, &namespace, "worker", None, &[("main", "tools/worker:3", &container(3))]);
    // A pod that never appears, then a host alert behind it.
    send(&detection(
        &id("never"),
        "K8S.NODE_SuspectDownload",
        Some("00000000-dead-4000-8000-000000000000"),
        &container(4),
    ));
    let mut host = detection(&id("host"), "K8S.NODE_SuspectDownload", None, &container(5));
    (host.in_container, host.container_id) = (Some(false), None);
    send(&host);

    let wanted = [id("known"), id("not-excepted"), id("late"), id("never"), id("host")];
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let alerts = read_enriched(&stack.topic("enriched"), &wanted, Duration::from_secs(40));
    let get = |name: &str| {
        alerts.get(&id(name)).unwrap_or_else(|| {
            panic!("no alert {name}; have {:?}\nenrich:\n{}", alerts.keys().collect::<Vec<_>>(), stack.log("enrich"))
        })
    };

    let (known, _) = get("known");
    assert_eq!(known.namespace.as_deref(), Some(namespace.as_str()));
    assert_eq!(known.pod.as_deref(), Some("web-7d4b9-x2x"));
    assert_eq!(known.workload.as_deref(), Some("ReplicaSet/web-7d4b9"));
    assert_eq!(known.image.as_deref(), Some("envoy:1.30"));
    assert_eq!(known.pod_labels.get("team").map(String::as_str), Some("shop"), "{:?}", known.pod_labels);
    assert!(known.unknown_fields.is_empty(), "{:?}", known.unknown_fields);

    assert!(!alerts.contains_key(&id("excepted")), "a detect exception by namespace applies to enrich's context");
    assert_eq!(get("not-excepted").0.namespace.as_deref(), Some(namespace.as_str()));

    let (late, _) = get("late");
    assert_eq!((late.pod.as_deref(), late.workload.as_deref()), (Some("worker"), Some("Pod/worker")));
    assert_eq!(late.image.as_deref(), Some("tools/worker:3"));
    assert!(late.unknown_fields.is_empty());

    let (never, never_at) = get("never");
    assert_eq!(never.unknown_fields, ["namespace", "pod", "workload", "image"]);
    let (host_alert, host_at) = get("host");
    assert!(host_alert.unknown_fields.is_empty());
    assert!(
        host_at < never_at,
        "the host alert, sent after the one waiting, reached the topic first ({host_at} vs {never_at} ms)"
    );

    assert_eq!(metric("palisade_enrich_context_total{outcome=\"table\"}"), Some(3.0), "known, excepted, not-excepted");
    assert_eq!(metric("palisade_enrich_context_total{outcome=\"waited\"}"), Some(1.0), "late");
    assert_eq!(metric("palisade_enrich_context_total{outcome=\"unknown\"}"), Some(1.0), "never");
    assert_eq!(
        metric(
            "palisade_alerts_suppressed_total{alert_type=\"K8S.NODE_ReverseShell\",suppression=\"detect exception\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric("palisade_enrich_context_waiting{stage=\"enrich\"}"), Some(0.0));
}
