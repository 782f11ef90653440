//! Memory held by the node detector windows and the collector's process table for N live containers (default
//! 10 000): a counting allocator measures the bytes each structure keeps after being filled. Prints figures;
//! asserts nothing.
//!
//!   cargo run --release -p palisade-bench --bin node-state-memory [containers] [processes per container]

use palisade_bench::live;
use palisade_collect::process_table::ProcessTable;
use palisade_detect::{DetectConfig, Engine, Event};
use palisade_schemas::{NodeEvent, NodeEventKind};

#[global_allocator]
static ALLOCATOR: palisade_bench::Counting = palisade_bench::Counting;

fn exec(container: usize, argv: &[&str], at_ms: i64) -> NodeEvent {
    NodeEvent {
        event_id: format!("bench/{container}/{at_ms}/{}", argv[0]),
        kind: NodeEventKind::Exec,
        node: "node-a".into(),
        kernel_time_ns: at_ms * 1_000_000,
        timestamp_ms: at_ms,
        pid: 1000 + container as i64,
        tgid: 1000 + container as i64,
        ppid: 999,
        uid: 0,
        euid: 0,
        gid: 0,
        comm: argv[0].into(),
        executable: Some(format!("/usr/bin/{}", argv[0])),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        argv_truncated: false,
        cwd: Some("/app".into()),
        tty: None,
        stdio: vec!["pipe".into(); 3],
        capabilities_effective: Some(0xa80425fb),
        cgroup_id: container as i64,
        container_id: Some(format!("{container:0>64x}")),
        pod_uid: Some(format!("{container:0>8x}-0000-0000-0000-000000000000")),
        container_name: None,
        image: None,
        pod_name: None,
        pod_namespace: None,
        in_container: true,
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

fn main() {
    let mut args = std::env::args().skip(1);
    let containers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let processes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let t = 1_764_000_000_000i64;

    let before = live();
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let engine_bytes = live() - before;
    let before = live();
    for container in 0..containers {
        // Every container holds an open recon window (two commands) and a download not yet run: the most state
        // each key can hold without firing.
        for (offset, argv) in
            [&["whoami"][..], &["id"][..], &["curl", "-s", "-o", "/tmp/app.bin", "https://example.com/a"][..]]
                .into_iter()
                .enumerate()
        {
            let event = exec(container, argv, t + offset as i64);
            engine.process(&Event::Node(&event), t);
        }
    }
    let window_bytes = live() - before;
    let keys = engine.window_keys();

    let before = live();
    let table = ProcessTable::new(containers * processes * 2);
    for container in 0..containers {
        let shim = (100_000 + container * (processes + 1)) as u32;
        table.record_exec(
            shim,
            "/usr/bin/containerd-shim-runc-v2",
            &["containerd-shim-runc-v2".into(), "-namespace".into(), "k8s.io".into()],
        );
        for process in 0..processes {
            let pid = shim + 1 + process as u32;
            table.record_fork(shim, pid);
            table.record_exec(
                pid,
                "/usr/local/bin/app-server",
                &["app-server".into(), "--config".into(), "/etc/app/config.yaml".into()],
            );
        }
    }
    let table_bytes = live() - before;

    println!("containers: {containers}, processes per container: {processes}");
    println!("engine (every detector, lists): {:.0} KiB", engine_bytes as f64 / 1024.0);
    println!(
        "windows: {:.1} MiB for {keys:?} ({:.0} bytes per container)",
        window_bytes as f64 / 1048576.0,
        window_bytes as f64 / containers as f64
    );
    println!(
        "process table: {:.1} MiB for {} entries ({:.0} bytes per container)",
        table_bytes as f64 / 1048576.0,
        table.len(),
        table_bytes as f64 / containers as f64
    );
}
