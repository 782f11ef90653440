//! Kafka goes away while `palisade collect` publishes: the collector keeps running with bounded memory (a bounded
//! queue, a bounded number of sends in flight), counts and logs what it drops (sends that timed out, events the
//! full queue refused), and publishes again by itself once the broker is back. Real Kafka, stopped and started by
//! the testbed script; real kernel events from this machine.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

const METRICS: &str = "127.0.0.1:19480";

fn testbed(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed");
    let status = Command::new(script).args(args).status().unwrap();
    assert!(status.success(), "scripts/testbed {args:?}");
}

/// The value of the first metric line starting with `prefix` (labels included), 0 when absent.
fn metric(prefix: &str) -> f64 {
    let text = reqwest::blocking::get(format!("http://{METRICS}/metrics")).and_then(|r| r.text()).unwrap_or_default();
    text.lines().find_map(|line| line.strip_prefix(prefix)?.trim().parse().ok()).unwrap_or(0.0)
}

fn drops() -> (f64, f64) {
    (
        metric(r#"palisade_dropped_total{component="collect",reason="bus_error"}"#),
        metric(r#"palisade_collect_events_total{what="queue_drop"}"#),
    )
}

/// Whether an exec with `marker` as its first argument reaches the node-events topic within `timeout`.
fn marker_arrives(topic: &str, marker: &str, timeout: Duration) -> bool {
    common::wait_for_node_event(topic, timeout, |event| event.argv.get(1).is_some_and(|argument| argument == marker))
        .is_some()
}

#[test]
fn a_kafka_outage_drops_with_counters_and_the_collector_recovers_by_itself() {
    let mut stack = common::Stack::new("collect-outage");
    stack.set("PALISADE__METRICS_LISTEN_ADDR", METRICS);
    // Small bounds so the outage fills them within seconds: sends fail after 4 s, 256 events may wait.
    stack.set("PALISADE__KAFKA__MESSAGE_TIMEOUT_MS", "4000");
    stack.set("PALISADE__COLLECT__QUEUE_CAPACITY", "256");
    stack.start(&["collect"]);
    let topic = stack.topic("node_events");

    let status = Command::new("/bin/true").arg("palisade-before-outage").status().unwrap();
    assert!(status.success());
    assert!(
        marker_arrives(&topic, "palisade-before-outage", Duration::from_secs(30)),
        "published before the outage\n{}",
        stack.log("collect")
    );
    let (bus_errors_before, queue_drops_before) = drops();

    testbed(&["down", "kafka"]);
    // An exec storm while the broker is away: fork, exec and exit events, far more than the bounds hold.
    let status = Command::new("/bin/sh")
        .args(["-c", "i=0; while [ $i -lt 4000 ]; do /bin/true palisade-during-outage; i=$((i+1)); done"])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut bus_errors, mut queue_drops) = drops();
    while bus_errors <= bus_errors_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        (bus_errors, queue_drops) = drops();
    }
    stack.assert_running();
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", stack.pid("collect")))
        .ok()
        .and_then(|status| status.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned())));
    eprintln!(
        "collect during the outage: {} sends timed out, {} events refused by the full queue, RSS {rss_kib:?}",
        bus_errors - bus_errors_before,
        queue_drops - queue_drops_before
    );
    assert!(bus_errors > bus_errors_before, "sends that timed out are counted as drops");
    assert!(queue_drops > queue_drops_before, "the full queue refuses and counts, it does not grow");
    let log = stack.log("collect");
    assert!(log.contains("node collector dropped events"), "queue drops are logged:\n{log}");
    assert!(log.contains("bus_error"), "failed sends are logged:\n{log}");

    testbed(&["up", "kafka"]);
    // The same process publishes again once the broker is back.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut arrived = false;
    while !arrived && Instant::now() < deadline {
        Command::new("/bin/true").arg("palisade-after-outage").status().unwrap();
        arrived = marker_arrives(&topic, "palisade-after-outage", Duration::from_secs(10));
    }
    assert!(arrived, "published again after the outage, without a restart\n{}", stack.log("collect"));
    stack.assert_running();
}
