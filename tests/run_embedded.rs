//! `palisade run` (embedded, in-process bus, eBPF as root): `palisade test-alert` in another process appends a
//! K8S.NODE_EICAR alert to the alerts file. Also checks that SIGTERM drains and exits cleanly and that `/readyz`
//! says ready once every stage runs.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

const METRICS_ADDR: &str = "127.0.0.1:19464";

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn run_then_test_alert_appends_eicar_to_the_alerts_file() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let (mut run, ready) = common::start_embedded_run(&alerts, &[("PALISADE__METRICS_LISTEN_ADDR", METRICS_ADDR)]);
    assert!(ready.contains("node collection on"), "{ready}");
    // Ready once every stage, the webhook and the collector run (each starts on its own task).
    let deadline = Instant::now() + Duration::from_secs(20);
    let every_stage_ok = |body: &str| {
        ["audit", "collect", "detect", "enrich", "sink"]
            .iter()
            .all(|stage| body.lines().any(|l| l == format!("{stage} ok")))
    };
    let (status, body) = loop {
        let response = reqwest::blocking::get(format!("http://{METRICS_ADDR}/readyz")).unwrap();
        let answer = (response.status().as_u16(), response.text().unwrap_or_default());
        if (answer.0 == 200 && every_stage_ok(&answer.1)) || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200, "{body}");
    assert!(every_stage_ok(&body), "{body}");

    let started = Instant::now();
    assert!(Command::new(env!("CARGO_BIN_EXE_palisade")).arg("test-alert").status().unwrap().success());
    let deadline = started + Duration::from_secs(15);
    let mut found = None;
    while Instant::now() < deadline && found.is_none() {
        let text = std::fs::read_to_string(&alerts).unwrap_or_default();
        found = text
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|alert| alert["alert_type"] == "K8S.NODE_EICAR");
        std::thread::sleep(Duration::from_millis(20));
    }
    let alert = found.expect("K8S.NODE_EICAR appended to the alerts file");
    eprintln!("palisade run: test-alert -> alerts file in {} ms", started.elapsed().as_millis());
    assert_eq!(alert["severity"], "High");
    assert_eq!(alert["in_container"], false);

    // The metrics endpoint shows the collector and the stages at work (collector counters are exported every
    // second, so wait for the first report).
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let text = reqwest::blocking::get(format!("http://{METRICS_ADDR}/metrics")).unwrap().text().unwrap();
        if metric(&text, r#"palisade_collect_events_total{what="exec"}"#).unwrap_or(0.0) >= 1.0
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(metric(&metrics, r#"palisade_collect_events_total{what="exec"}"#).unwrap_or(0.0) >= 1.0, "{metrics}");
    assert_eq!(metric(&metrics, r#"palisade_collect_events_total{what="kernel_drop"}"#), Some(0.0), "{metrics}");
    assert_eq!(metric(&metrics, r#"palisade_component_up{component="sink"}"#), Some(1.0), "{metrics}");
    assert!(
        metric(&metrics, r#"palisade_stage_produced_total{record="Alert",stage="enrich"}"#).unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );

    // SIGTERM: drains and exits 0.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.0.id() as i32, libc::SIGTERM) };
    let status = common::wait_for_exit(&mut run.0, Duration::from_secs(20)).expect("palisade run stops on SIGTERM");
    assert!(status.success(), "{status}");
}
