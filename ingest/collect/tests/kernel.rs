//! Loads the real eBPF programs into this machine's kernel (needs root) and checks what real processes produce.

use std::process::Command;
use std::time::{Duration, Instant};

use palisade_collect::{CollectConfig, Collector};
use palisade_schemas::{NodeEvent, NodeEventKind};

fn wait_for(
    receiver: &mut tokio::sync::mpsc::Receiver<NodeEvent>,
    pred: impl Fn(&NodeEvent) -> bool,
) -> Option<NodeEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match receiver.try_recv() {
            Ok(event) if pred(&event) => return Some(event),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

#[test]
fn exec_events_carry_argv_ancestry_and_host_attribution() {
    assert_eq!(
        palisade_collect::loader::unavailable_reason(),
        None,
        "this test loads eBPF programs: run it as root on a kernel with BTF"
    );
    let (collector, mut events) = Collector::start(&CollectConfig::default(), "test-node").expect("programs load");

    let status =
        Command::new("/bin/sh").args(["-c", "/bin/true palisade-smoke-a 'two words' && exit 0"]).status().unwrap();
    assert!(status.success());
    let event = wait_for(&mut events, |e| e.argv.iter().any(|a| a == "palisade-smoke-a")).expect("exec event arrives");
    assert_eq!(event.kind, NodeEventKind::Exec);
    assert_eq!(event.executable.as_deref(), Some("/bin/true"));
    assert_eq!(event.argv, ["/bin/true", "palisade-smoke-a", "two words"]);
    assert!(!event.argv_truncated);
    assert_eq!(event.node, "test-node");
    assert!(!event.in_container, "a host process is not in a container");
    assert!(event.ppid > 0);
    assert_eq!(event.ancestry.first().map(|p| p.executable.as_str()), Some("/bin/sh"), "{:?}", event.ancestry);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - event.timestamp_ms).abs() < 10_000, "wall clock derived from ktime: {}", event.timestamp_ms);

    // A command line longer than the kernel limit is cut and flagged, not lost.
    let long = "x".repeat(3000);
    Command::new("/bin/true").arg("palisade-smoke-long").arg(&long).status().unwrap();
    let event =
        wait_for(&mut events, |e| e.argv.get(1).is_some_and(|a| a == "palisade-smoke-long")).expect("long exec");
    assert!(event.argv_truncated);

    // The collector's own process is excluded in the kernel: a thread of this test process execs nothing, but
    // a child it spawns is reported; our own pid never appears as the event's tgid.
    assert_ne!(event.tgid, i64::from(std::process::id()));
    let stats = &collector.stats;
    assert!(stats.exec_events.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert_eq!(stats.queue_drops.load(std::sync::atomic::Ordering::Relaxed), 0);
    collector.stop();
}
