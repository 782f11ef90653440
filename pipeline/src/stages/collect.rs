//! The collect stage: node events from the eBPF collector to the node-events topic, and the collector's
//! counters to the metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_collect::CollectorStats;
use palisade_runtime::bus::Outgoing;
use palisade_runtime::telemetry::{
    CollectorProgress, ComponentStarted, ComponentStopped, NodeEventPublished, QueueDepth, RecordProduced,
};
use palisade_runtime::{Bus, Shutdown, TopicsConfig};
use palisade_schemas::{Codec, NodeEvent, NodeEventKind};
use tokio::sync::mpsc;

use super::publish_until_acked;
use crate::PipelineError;

const STAGE: &str = "collect";

pub async fn run(
    bus: Bus,
    topics: TopicsConfig,
    mut events: mpsc::Receiver<NodeEvent>,
    stats: Arc<CollectorStats>,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let codec = Codec::<NodeEvent>::new()?;
    let mut reported = [0u64; 6];
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ComponentStarted { component: STAGE }.emit();
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                let payload = codec.encode(&event)?;
                let key = event.partition_key();
                let outgoing = Outgoing { topic: &topics.node_events, key: Some(key.as_bytes()), payload: &payload, headers: &[] };
                if !publish_until_acked(&bus, outgoing, &shutdown).await {
                    break;
                }
                RecordProduced { stage: STAGE, record: "NodeEvent" }.emit();
                NodeEventPublished { kind: kind_name(event.kind) }.emit();
            }
            _ = ticker.tick() => {
                QueueDepth { queue: "collect", depth: events.len() }.emit();
                let now = [
                    stats.exec_events.load(Ordering::Relaxed),
                    stats.fork_events.load(Ordering::Relaxed),
                    stats.exit_events.load(Ordering::Relaxed),
                    stats.kernel_drops.load(Ordering::Relaxed),
                    stats.kernel_capture_failures.load(Ordering::Relaxed),
                    stats.queue_drops.load(Ordering::Relaxed),
                ];
                let delta: Vec<u64> = now.iter().zip(reported).map(|(n, r)| n.saturating_sub(r)).collect();
                reported = now;
                CollectorProgress {
                    exec: delta[0], fork: delta[1], exit: delta[2],
                    kernel_drops: delta[3], capture_failures: delta[4], queue_drops: delta[5],
                }
                .emit();
            }
            _ = shutdown.wait() => {
                // Publish what the reader already queued, then stop.
                while let Ok(event) = events.try_recv() {
                    let payload = codec.encode(&event)?;
                    let key = event.partition_key();
                    let outgoing = Outgoing { topic: &topics.node_events, key: Some(key.as_bytes()), payload: &payload, headers: &[] };
                    if !publish_until_acked(&bus, outgoing, &shutdown).await {
                        break;
                    }
                }
                break;
            }
        }
    }
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}

fn kind_name(kind: NodeEventKind) -> &'static str {
    match kind {
        NodeEventKind::Exec => "exec",
        NodeEventKind::Exit => "exit",
        NodeEventKind::Fork => "fork",
        NodeEventKind::FileOpen => "file_open",
        NodeEventKind::FileUnlink => "file_unlink",
        NodeEventKind::FileRename => "file_rename",
        NodeEventKind::FileTruncate => "file_truncate",
        NodeEventKind::FileChmod => "file_chmod",
        NodeEventKind::FileChown => "file_chown",
        NodeEventKind::FileUtimes => "file_utimes",
        NodeEventKind::NetConnect => "net_connect",
        NodeEventKind::NetListen => "net_listen",
        NodeEventKind::NetAccept => "net_accept",
        NodeEventKind::NetSend => "net_send",
        NodeEventKind::NamespaceChange => "namespace_change",
        NodeEventKind::Signal => "signal",
        NodeEventKind::PrivilegeChange => "privilege_change",
    }
}
