//! Trace export end to end: `palisade audit`, `detect`, `enrich` and `sink` as separate processes over Kafka, each
//! exporting its spans over OTLP/HTTP to the testbed's Jaeger v2. An audit batch posted to the webhook raises
//! alerts; the alert record on the alerts topic carries a W3C `traceparent`, and Jaeger's query API returns that
//! trace with one span per stage, each the child of the stage before it, each from its own process. The processes'
//! Prometheus metrics reach the same collector over OTLP (shown again by its Prometheus exporter).

mod common;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use serde_json::{Value, json};

/// The trace ID of the first record on `topic` whose `traceparent` header is sampled, with the header.
fn traced_record(topic: &str, timeout: Duration) -> Option<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("e2e-trace-{}", common::run_id()))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else { continue };
        let header = message.headers().and_then(|headers| {
            headers.iter().find(|h| h.key == "traceparent").and_then(|h| std::str::from_utf8(h.value?).ok())
        });
        // version-traceid-spanid-flags; flags 01: sampled.
        if let Some(value) = header
            && let [_, trace, _, "01"] = value.split('-').collect::<Vec<_>>()[..]
        {
            return Some((trace.to_owned(), value.to_owned()));
        }
    }
    None
}

/// Jaeger's spans of a trace as (operation, span ID, parent span ID, process tag `palisade.process`), once the
/// trace holds a span of every stage (or time ran out).
fn trace_spans(trace: &str, stages: &[&str]) -> Vec<(String, String, Option<String>, String)> {
    let url = format!("{}/api/traces/{trace}", common::env("PALISADE_TEST_JAEGER"));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let answer: Value =
            reqwest::blocking::get(&url).ok().and_then(|r| r.json().ok()).unwrap_or_else(|| json!({"data": []}));
        let Some(found) = answer["data"].get(0) else {
            assert!(Instant::now() < deadline, "the trace never reached Jaeger: {answer}");
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let processes = &found["processes"];
        let spans: Vec<_> = found["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|span| {
                let parent = span["references"]
                    .as_array()
                    .and_then(|refs| refs.iter().find(|r| r["refType"] == "CHILD_OF"))
                    .and_then(|r| r["spanID"].as_str())
                    .map(str::to_owned);
                let process = processes[span["processID"].as_str().unwrap()]["tags"]
                    .as_array()
                    .and_then(|tags| tags.iter().find(|t| t["key"] == "palisade.process"))
                    .and_then(|t| t["value"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                (
                    span["operationName"].as_str().unwrap().to_owned(),
                    span["spanID"].as_str().unwrap().to_owned(),
                    parent,
                    process,
                )
            })
            .collect();
        let complete = stages.iter().all(|stage| spans.iter().any(|(operation, ..)| operation == stage));
        if complete || Instant::now() > deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn an_alerts_trace_in_jaeger_holds_every_stage_and_the_metrics_reach_the_collector() {
    let mut stack = common::Stack::new("trace");
    stack.set("PALISADE__TELEMETRY__OTLP__ENDPOINT", &common::env("PALISADE_TEST_OTLP"));
    // Every trace kept here; the default keeps 1 %.
    stack.set("PALISADE__TELEMETRY__OTLP__SAMPLING_RATIO", "1.0");
    stack.set("PALISADE__TELEMETRY__OTLP__SERVICE_NAME", &format!("palisade-{}", stack.run));
    stack.set("PALISADE__TELEMETRY__OTLP__METRICS_INTERVAL_SECS", "1");
    let webhook = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    stack.set("PALISADE__AUDIT__LISTEN_ADDR", &webhook.to_string());
    stack.set("PALISADE__AUDIT__ALLOW_UNAUTHENTICATED", "true");
    stack.envs.retain(|(key, _)| !key.starts_with("PALISADE__SINK__OPENSEARCH__"));
    stack.start(&["audit", "detect", "enrich", "sink"]);

    // The corpus's events as the API server posts them (its certificate is the webhook's generated one).
    let batch = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": common::corpus_audit_events()});
    let client = reqwest::blocking::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let sent = client.post(format!("https://{webhook}/audit/webhook")).json(&batch).send();
        match sent {
            Ok(response) => break response.status(),
            Err(error) => {
                assert!(Instant::now() < deadline, "the webhook never answered: {error}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(status.is_success(), "{status}");

    let (trace, header) = traced_record(&stack.topic("alerts"), Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no alert with a sampled traceparent\nsink log:\n{}", stack.log("sink")));
    let stages = ["audit", "detect", "enrich", "sink"];
    let spans = trace_spans(&trace, &stages);
    // From the span the alert record names, up through the parents: sink, enrich, detect, then the webhook's root.
    let mut at = header.split('-').nth(2).map(str::to_owned);
    for stage in stages.iter().rev() {
        let id = at.clone().unwrap_or_else(|| panic!("the {stage} span has no parent in {trace}: {spans:?}"));
        let (operation, _, parent, process) = spans
            .iter()
            .find(|(_, span_id, ..)| *span_id == id)
            .unwrap_or_else(|| panic!("span {id} ({stage}) not in trace {trace} ({header}): {spans:?}"));
        assert_eq!(operation, stage, "the chain of spans runs sink, enrich, detect, audit: {spans:?}");
        assert_eq!(process, stage, "each stage's span comes from its own process: {spans:?}");
        at = parent.clone();
    }
    assert_eq!(at, None, "the webhook starts the trace: {spans:?}");

    // Detect's consumed count, sent over OTLP, under this run's service name.
    let job = format!("job=\"palisade-{}\"", stack.run);
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = reqwest::blocking::get(common::env("PALISADE_TEST_OTLP_METRICS"))
            .and_then(|r| r.text())
            .unwrap_or_default();
        let found = text.lines().any(|line| {
            line.starts_with("palisade_stage_consumed") && line.contains(&job) && line.contains("stage=\"detect\"")
        });
        if found || Instant::now() > deadline {
            break (found, text);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(text.0, "detect's metrics never reached the collector:\n{}", text.1);
}
