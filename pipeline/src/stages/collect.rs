//! The collect stage: node events from the eBPF collector to the node-events topic, and the collector's
//! counters to the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use palisade_collect::CollectorStats;
use palisade_collect::cri::{CriResolver, Lookup};
use palisade_runtime::bus::Outgoing;
use palisade_runtime::trace::RecordSpan;
use palisade_runtime::{Bus, Shutdown, TopicsConfig};
use palisade_schemas::{Codec, NodeEvent, NodeEventKind};
use palisade_telemetry::{
    CollectorProgress, ComponentStarted, ComponentStopped, CriLookup, ItemDropped, NodeEventPublished, QueueDepth,
    RecordProduced,
};
use tokio::sync::mpsc;

use crate::PipelineError;

const STAGE: &str = "collect";

/// Node events in flight to the bus at once. The kernel side cannot be replayed, so events are not acknowledged
/// one by one: up to this many sends overlap (rdkafka batches them), and beyond it the stage stops reading, the
/// queue from the kernel reader fills, and the reader counts what it drops.
const MAX_IN_FLIGHT: usize = 4096;

/// Sends one encoded event; the future holds only the key and bytes (the event itself is dropped before).
async fn publish_owned(
    bus: Bus,
    topic: Arc<str>,
    kind: NodeEventKind,
    (key, payload): (String, Vec<u8>),
    record: RecordSpan,
) -> (NodeEventKind, bool) {
    let headers: Vec<_> = record.header().into_iter().collect();
    let outgoing = Outgoing { topic: &topic, key: Some(key.as_bytes()), payload: &payload, headers: &headers };
    let delivered = bus.publish(outgoing).await.is_ok();
    (kind, delivered)
}

fn publish(
    bus: &Bus,
    topic: &Arc<str>,
    codec: &Codec<NodeEvent>,
    event: NodeEvent,
) -> Result<impl std::future::Future<Output = (NodeEventKind, bool)> + use<>, PipelineError> {
    // A node event starts its trace: a kept one follows it through detect, enrich and the sink.
    let record = RecordSpan::start(STAGE, &[]);
    let payload = codec.encode(&event)?;
    Ok(publish_owned(bus.clone(), Arc::clone(topic), event.kind, (event.partition_key(), payload), record))
}

fn record_outcome(kind: NodeEventKind, delivered: bool) {
    if delivered {
        RecordProduced { stage: STAGE, record: "NodeEvent" }.emit();
        NodeEventPublished { kind: kind_name(kind) }.emit();
    } else {
        // rdkafka retried until the delivery timeout; the kernel cannot resend, so this is a counted drop.
        ItemDropped { component: STAGE, reason: "bus_error", count: 1 }.emit();
    }
}

/// Adds the CRI runtime's container name, image and pod to a container's event (one call per container).
async fn with_cri(cri: &mut Option<CriResolver>, mut event: NodeEvent) -> NodeEvent {
    if let Some(resolver) = cri
        && let Some(lookup) = resolver.fill(&mut event).await
        && lookup != Lookup::Cached
    {
        CriLookup { outcome: lookup.name() }.emit();
    }
    event
}

pub async fn run(
    bus: Bus,
    topics: TopicsConfig,
    mut events: mpsc::Receiver<NodeEvent>,
    stats: Arc<CollectorStats>,
    mut cri: Option<CriResolver>,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let codec = Codec::<NodeEvent>::new()?;
    let topic: Arc<str> = topics.node_events.as_str().into();
    let mut reported = [0u64; 11];
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut in_flight = FuturesUnordered::new();
    ComponentStarted { component: STAGE }.emit();
    loop {
        tokio::select! {
            Some((kind, delivered)) = in_flight.next(), if !in_flight.is_empty() => record_outcome(kind, delivered),
            event = events.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(event) = event else { break };
                let event = with_cri(&mut cri, event).await;
                in_flight.push(publish(&bus, &topic, &codec, event)?);
            }
            _ = ticker.tick() => {
                QueueDepth { queue: "collect", depth: events.len() }.emit();
                QueueDepth { queue: "collect_in_flight", depth: in_flight.len() }.emit();
                // Each counter's change since the last tick, in the order the fields below take their slots.
                let mut totals = reported.iter_mut();
                let mut since_last = |counter: &AtomicU64| {
                    let now = counter.load(Ordering::Relaxed);
                    let last = totals.next().expect("a slot for each counter reported");
                    now.saturating_sub(std::mem::replace(last, now))
                };
                CollectorProgress {
                    exec: since_last(&stats.exec_events),
                    fork: since_last(&stats.fork_events),
                    exit: since_last(&stats.exit_events),
                    kernel_drops: since_last(&stats.kernel_drops),
                    capture_failures: since_last(&stats.kernel_capture_failures),
                    queue_drops: since_last(&stats.queue_drops),
                    nested_cgroups: since_last(&stats.nested_cgroups),
                    folded_repeats: since_last(&stats.folded_repeats),
                    paths_unreadable: since_last(&stats.paths_unreadable),
                    argv_completions_skipped: since_last(&stats.argv_completions_skipped),
                    cgroup_paths_too_long: since_last(&stats.cgroup_paths_too_long),
                }
                .emit();
            }
            _ = shutdown.wait() => {
                // Publish what the reader already queued, then wait for every send.
                while let Ok(event) = events.try_recv() {
                    let event = with_cri(&mut cri, event).await;
                    in_flight.push(publish(&bus, &topic, &codec, event)?);
                }
                break;
            }
        }
    }
    while let Some((kind, delivered)) = in_flight.next().await {
        record_outcome(kind, delivered);
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
