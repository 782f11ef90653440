//! `palisade run` (embedded, in-process bus, eBPF as root): `palisade test-alert` in another process appends a
//! K8S.NODE_EICAR alert to the alerts file. Also checks that SIGTERM drains and exits cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn run_then_test_alert_appends_eicar_to_the_alerts_file() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let mut run = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["run", "--quiet", "--alerts-file"])
        .arg(&alerts)
        .env("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready when it says so on stderr.
    let stderr = run.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("palisade: running") {
                let _ = ready_tx.send(line.clone());
            }
            eprintln!("run: {line}");
        }
    });
    let ready = ready_rx.recv_timeout(Duration::from_secs(30)).expect("palisade run starts");
    assert!(ready.contains("node collection on"), "{ready}");

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

    // SIGTERM: drains and exits 0.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "palisade run did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
