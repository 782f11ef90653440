//! The detect changelog's cost for one shard holding N keys (default 1 000 000 containers, each with an open recon
//! window): the records and bytes of the first commit (every key) and of one after 1 % of the keys changed, the
//! time to serialise them, and the time to restore them into a new engine (JSON parse and the detectors' restore;
//! the Kafka read is not in it). Prints figures; asserts nothing.
//!
//!   cargo run --release -p palisade-bench --bin changelog [keys]

use std::collections::BTreeMap;
use std::time::Instant;

use palisade_detect::engine::{Pass, ShardChanges, StateChange};
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

/// The records one commit writes for the engine's changes (as the stage does: a head per detector, a record per
/// changed key of a keyed one), and the time taking the changes and serialising them took. `fields` learns each
/// keyed detector's field.
fn records_of(
    engine: &Engine,
    fields: &mut BTreeMap<String, &'static str>,
) -> (Vec<(String, Vec<u8>)>, std::time::Duration) {
    let started = Instant::now();
    let changes: Vec<ShardChanges> = engine.take_changes();
    let mut records = Vec::new();
    for shard in changes {
        for (detector, change) in shard.states {
            // Named as the stage names them: `<topic>/<partition>/<detector>[/<key>]`.
            let head = format!("{}/{detector}", shard.shard);
            match change {
                StateChange::Whole(state) => records.push((head, serde_json::to_vec(&state).unwrap())),
                StateChange::Keyed(keyed) => {
                    fields.insert(detector.to_owned(), keyed.field);
                    for (key, value) in keyed.entries {
                        let payload = value.map(|value| serde_json::to_vec(&value).unwrap()).unwrap_or_default();
                        records.push((format!("{head}/{key}"), payload));
                    }
                    records.push((head, serde_json::to_vec(&keyed.rest).unwrap()));
                }
            }
        }
    }
    (records, started.elapsed())
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
    // The first commit writes every window (nothing was recorded before it)...
    let mut fields = BTreeMap::new();
    let (records, serialised) = records_of(&engine, &mut fields);
    let first_records = records.len();
    let bytes: usize = records.iter().map(|(key, payload)| key.len() + payload.len()).sum();
    // ...the next ones what changed: one container in a hundred runs a third command.
    let touched = (keys / 100).max(1);
    for container in (0..keys).step_by(keys / touched) {
        let event = exec(container, "uname", t + 5);
        engine.process_in(shard, Pass::Input, &Event::Node(&event), t);
    }
    let (changed, changed_serialised) = records_of(&engine, &mut fields);
    let changed_bytes: usize = changed.iter().map(|(key, payload)| key.len() + payload.len()).sum();
    let changed_records = changed.len();

    // Restore: the newest record of each name, put together as the stage does, into a new engine.
    let restored_engine = Engine::new(&config).expect("the default configuration builds");
    let started = Instant::now();
    let mut newest: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, payload) in records.into_iter().chain(changed) {
        newest.insert(name, payload);
    }
    let mut states: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut entries: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    let prefix = format!("{shard}/");
    for (name, payload) in &newest {
        let name = name.strip_prefix(&prefix).expect("one shard");
        match name.split_once('/') {
            Some((detector, key)) => {
                let value = serde_json::from_slice(payload).expect("an entry parses");
                entries.entry(detector.to_owned()).or_default().insert(key.to_owned(), value);
            }
            None => {
                states.insert(name.to_owned(), serde_json::from_slice(payload).expect("a state parses"));
            }
        }
    }
    for (detector, field) in &fields {
        if let Some(serde_json::Value::Object(state)) = states.get_mut(detector) {
            let map = entries.remove(detector).unwrap_or_default();
            state.insert((*field).into(), serde_json::Value::Object(map));
        }
    }
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
    println!(
        "first commit (every key): {first_records} records, {:.1} MiB with their keys ({:.0} bytes per window); \
         taken and serialised in {:.2} s",
        bytes as f64 / 1048576.0,
        bytes as f64 / keys as f64,
        serialised.as_secs_f64(),
    );
    println!(
        "a commit after {touched} keys changed: {changed_records} records, {:.2} MiB; taken and serialised in {:.1} ms",
        changed_bytes as f64 / 1048576.0,
        changed_serialised.as_secs_f64() * 1000.0,
    );
    println!(
        "restore (parse and detectors' restore): {:.2} s ({:.2} s per million keys)",
        restored.as_secs_f64(),
        per_million(restored.as_secs_f64())
    );
}
