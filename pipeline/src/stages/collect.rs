//! The collect stage: node events from the eBPF collector to the node-events topic, and the collector's
//! counters to the metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use palisade_collect::CollectorStats;
use palisade_runtime::bus::Outgoing;
use palisade_runtime::telemetry::{CollectorProgress, ComponentStarted, ComponentStopped, RecordProduced};
use palisade_runtime::{Bus, Shutdown, TopicsConfig};
use palisade_schemas::{Codec, NodeEvent};
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
            }
            _ = ticker.tick() => {
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
