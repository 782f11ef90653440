//! The detect changelog's cost for one shard holding N keys (default 1 000 000 containers, each with an open recon
//! window): the bytes one commit writes for it, the time to serialise them, and the time to restore them into a
//! new engine (JSON parse and the detectors' restore; the Kafka read is not in it). Prints figures; asserts
//! nothing.
//!
//!   cargo run --release -p palisade-bench --bin changelog [keys]

use std::collections::BTreeMap;
use std::time::Instant;

use palisade_detect::engine::Pass;
use palisade_detect::{DetectConfig, Engine, Event};
use palisade_schemas::{NodeEvent, NodeEventKind};

fn exec(container: usize, command: &str, at_ms: i64) -> NodeEvent {
    let text = include_str!("../../../schemas/fixtures/node_event.v1.json");
    let mut event: NodeEvent = serde_json::from_str(text).expect("the fixture reads");
    event.event_id = format!("bench/{container}/{at_ms}/{command}");
    event.kind = NodeEventKind::Exec;
    event.timestamp_ms = at_ms;
    event.kernel_time_ns = at_ms * 1_000_000;
    event.comm = command.into();
    event.executable = Some(format!("/usr/bin/{command}"));
    event.argv = vec![command.into()];
    event.container_id = Some(format!("{container:0>64x}"));
    event.net = None;
    event
}

fn main() {
    let keys: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut config = DetectConfig::default();
    config.windows.max_keys = keys + 1;
    let engine = Engine::new(&config).expect("the default configuration builds");
    let t = 1_764_000_000_000i64;
    let shard = "palisade.node.events/0";
    let started = Instant::now();
    for container in 0..keys {
        for (offset, command) in ["whoami", "id"].into_iter().enumerate() {
            let event = exec(container, command, t + offset as i64);
            engine.process_in(shard, Pass::Input, &Event::Node(&event), t);
        }
    }
    let filled = started.elapsed();

    let started = Instant::now();
    let changes = engine.take_changes();
    let records: Vec<(String, Vec<u8>)> = (changes.iter())
        .flat_map(|change| change.states.iter())
        .map(|(key, state)| ((*key).to_owned(), serde_json::to_vec(state).expect("a state serialises")))
        .collect();
    let serialised = started.elapsed();
    let bytes: usize = records.iter().map(|(_, payload)| payload.len()).sum();

    let restored_engine = Engine::new(&config).expect("the default configuration builds");
    let started = Instant::now();
    let states: BTreeMap<String, serde_json::Value> = (records.iter())
        .map(|(key, payload)| (key.clone(), serde_json::from_slice(payload).expect("a state parses")))
        .collect();
    let refused = restored_engine.restore_shard(shard, t, &states);
    let restored = started.elapsed();
    assert!(refused.is_empty(), "refused: {refused:?}");

    let per_million = |seconds: f64| seconds * 1_000_000.0 / keys as f64;
    println!(
        "keys: {keys} containers with an open recon window, in one shard ({} events in {:.1} s)",
        keys * 2,
        filled.as_secs_f64()
    );
    println!(
        "keys held after restore: {:?}",
        restored_engine.window_keys().into_iter().filter(|(_, n)| *n > 0).collect::<Vec<_>>()
    );
    for (key, payload) in &records {
        println!("changelog record {key}: {:.1} MiB", payload.len() as f64 / 1048576.0);
    }
    println!(
        "one commit writes {:.1} MiB ({:.0} bytes per key); serialised in {:.2} s ({:.2} s per million keys)",
        bytes as f64 / 1048576.0,
        bytes as f64 / keys as f64,
        serialised.as_secs_f64(),
        per_million(serialised.as_secs_f64())
    );
    println!(
        "restore (parse and detectors' restore): {:.2} s ({:.2} s per million keys)",
        restored.as_secs_f64(),
        per_million(restored.as_secs_f64())
    );
}
