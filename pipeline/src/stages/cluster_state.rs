//! The cluster-state table on the bus: enrich's list/watch of the API server writes every object it follows to the
//! compacted `palisade.cluster.state` topic (key `<cluster>/<Kind>/<namespace>/<name>`, a null value when the
//! object is gone), and every detect instance reads that topic whole into its engine, so objects that predate
//! Palisade are known to the joins and to node alerts' pod context, whichever instance holds their events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt as _;
use palisade_detect::Engine;
use palisade_enrich::kubernetes::{ClusterStateWatcher, ClusterView, KubernetesConfig, PendingRecords, StateRecord};
use palisade_runtime::bus::Outgoing;
use palisade_runtime::{Bus, KafkaConfig, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{ClusterObject, Codec};
use palisade_telemetry::{ClusterStateWaiting, ItemDropped, RecordProduced};

use super::{DeadLetters, next_delivery, publish_until_acked};
use crate::PipelineError;

const STAGE: &str = "cluster-state";

/// Stops the list/watch when dropped.
pub struct StateWatch(tokio::task::JoinHandle<()>);

impl Drop for StateWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the list/watch of `kubernetes` (its addresses and credential files are checked first, so a bad one fails
/// the start-up): every object to the cluster-state topic, and the pods into `view` too. On Kafka the keys this
/// cluster already has on the topic are read first (in the watch's task), so a first list that lacks one deletes
/// it.
pub async fn start_watch(
    bus: &Bus,
    kafka: Option<&KafkaConfig>,
    (topics, cluster): (&TopicsConfig, &str),
    kubernetes: &KubernetesConfig,
    view: Arc<ClusterView>,
    shutdown: Shutdown,
) -> Result<StateWatch, PipelineError> {
    let mut watcher = ClusterStateWatcher::new(kubernetes, cluster)?.with_view(view);
    let read_back = match (bus, kafka) {
        (Bus::Kafka(_), Some(kafka)) => Some((kafka.clone(), topics.cluster_state.clone())),
        _ => None,
    };
    let (bus, topics) = (bus.clone(), topics.clone());
    let codec = Codec::<ClusterObject>::new()?;
    let pending = Arc::new(PendingRecords::default());
    // One task, so that aborting it (`StateWatch`'s drop) stops the watch as well. The read-back is in it too: the
    // stage does not wait for it.
    let task = tokio::spawn(async move {
        if let Some((kafka, topic)) = read_back {
            match tokio::task::spawn_blocking(move || written_keys(&kafka, &topic)).await {
                Ok(Ok(keys)) => watcher.already_written(keys),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cluster-state topic not read back; no tombstones for objects gone meanwhile")
                }
                Err(error) => tracing::warn!(%error, "cluster-state read-back failed"),
            }
        }
        let watching = watcher.run(Arc::clone(&pending));
        let publishing = async {
            let dead_letters = DeadLetters { topic: &topics.dead_letter, stage: STAGE };
            loop {
                // At most one record per key in a batch, and a batch ends before the next starts: a key's records
                // reach the topic in order, and the ones of a batch go out together.
                let batch = pending.take().await;
                let sent = futures::stream::iter(batch)
                    .map(|record| publish(&bus, &topics.cluster_state, &codec, record, (dead_letters, &shutdown)))
                    .buffer_unordered(PUBLISH_IN_FLIGHT)
                    .fold(true, |all, sent| async move { all && sent })
                    .await;
                ClusterStateWaiting { waiting: pending.len() }.emit();
                if !sent {
                    // Shutdown: what was not sent is listed again at the next start.
                    break;
                }
            }
        };
        tokio::select! {
            () = watching => {}
            () = publishing => {}
        }
    });
    Ok(StateWatch(task))
}

/// The keys the topic holds (their newest record is not a tombstone).
fn written_keys(kafka: &KafkaConfig, topic: &str) -> Result<BTreeSet<String>, palisade_runtime::BusError> {
    let mut keys = BTreeSet::new();
    palisade_runtime::kafka::read_range(kafka, topic, None, None, |message, _, _| {
        let key = String::from_utf8_lossy(message.key.as_deref().unwrap_or_default()).into_owned();
        if message.payload.is_empty() {
            keys.remove(&key);
        } else {
            keys.insert(key);
        }
    })?;
    Ok(keys)
}

/// Records of one batch being published at once.
const PUBLISH_IN_FLIGHT: usize = 64;

/// Publishes one record until the bus has it; false only if shutdown came first. A record that does not encode is
/// dropped, counted.
async fn publish(
    bus: &Bus,
    topic: &str,
    codec: &Codec<ClusterObject>,
    record: StateRecord,
    (dead_letters, shutdown): (DeadLetters<'_>, &Shutdown),
) -> bool {
    let payload = match &record.object {
        Some(object) => match codec.encode(object) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(key = record.key, %error, "cluster object not encoded");
                ItemDropped { component: STAGE, reason: "not encoded", count: 1 }.emit();
                return true;
            }
        },
        None => Vec::new(),
    };
    let outgoing = Outgoing { topic, key: Some(record.key.as_bytes()), payload: &payload, headers: &[] };
    let sent = publish_until_acked(bus, outgoing, dead_letters, shutdown).await;
    if sent {
        RecordProduced { stage: STAGE, record: "ClusterObject" }.emit();
    }
    sent
}

/// How often detect tries again to open the cluster-state topic when it could not (absent, broker away).
const TABLE_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

/// The cluster-state topic for detect: in process, subscribed now (a subscription sees only what is published
/// after it, so this comes before any source starts); on Kafka, nothing yet (`load` reads it).
pub fn subscribe(bus: &Bus, topics: &TopicsConfig) -> Option<Subscription> {
    match bus {
        Bus::InProcess(_) => bus.table(&topics.cluster_state, &BTreeMap::new()).ok(),
        Bus::Kafka(_) => None,
    }
}

/// On Kafka: reads the whole topic into the engine before detect takes its first input (so the first events after
/// a start already find the objects), and returns the offset to follow each partition from. An unreadable topic
/// (absent, broker away) is logged and followed later from its start.
pub async fn load(bus: &Bus, topics: &TopicsConfig, engine: &Arc<Engine>) -> BTreeMap<i32, i64> {
    let Bus::Kafka(kafka) = bus else { return BTreeMap::new() };
    let (config, topic, engine) = (kafka.config().clone(), topics.cluster_state.clone(), Arc::clone(engine));
    let started = std::time::Instant::now();
    let loaded = tokio::task::spawn_blocking(move || {
        let codec = Codec::<ClusterObject>::new().map_err(|e| e.to_string())?;
        let mut next = BTreeMap::new();
        palisade_runtime::kafka::read_range(&config, &topic, None, None, |message, _, _| {
            next.insert(message.partition, message.offset + 1);
            apply(&engine, &codec, &message);
        })
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((next, engine.cluster_state_pods()))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|loaded| loaded);
    match loaded {
        Ok((next, pods)) => {
            tracing::info!(pods, elapsed_ms = started.elapsed().as_millis() as u64, "cluster state loaded");
            next
        }
        Err(error) => {
            tracing::warn!(%error, "cluster-state topic not read; followed from its start once it can be");
            BTreeMap::new()
        }
    }
}

/// One record of the topic into the engine: a tombstone forgets its key; a record that does not decode is skipped,
/// logged and counted (the table is read again from the topic at each start; nothing is acknowledged).
fn apply(engine: &Engine, codec: &Codec<ClusterObject>, message: &palisade_runtime::Message) {
    let key = String::from_utf8_lossy(message.key.as_deref().unwrap_or_default());
    if message.payload.is_empty() {
        return engine.forget_cluster_object(&key);
    }
    match codec.decode(&message.payload) {
        Ok(object) => engine.apply_cluster_object(&object),
        Err(error) => {
            tracing::warn!(%key, %error, "cluster-state record unreadable; skipped");
            ItemDropped { component: STAGE, reason: "unreadable", count: 1 }.emit();
        }
    }
}

/// Applies the topic's records to the engine's cluster state until shutdown, from `next` (what `load` read) on;
/// opened again every `TABLE_RETRY` while it cannot be.
pub async fn follow(
    bus: Bus,
    (topic, next): (String, BTreeMap<i32, i64>),
    subscription: Option<Subscription>,
    engine: Arc<Engine>,
    shutdown: Shutdown,
) {
    let codec = match Codec::<ClusterObject>::new() {
        Ok(codec) => codec,
        Err(error) => return tracing::error!(%error, "cluster-state codec"),
    };
    let mut subscription = match subscription {
        Some(subscription) => subscription,
        None => loop {
            let (opening, topic, next) = (bus.clone(), topic.clone(), next.clone());
            match tokio::task::spawn_blocking(move || opening.table(&topic, &next)).await {
                Ok(Ok(subscription)) => break subscription,
                Ok(Err(error)) => tracing::warn!(%error, "cluster-state topic not opened; trying again"),
                Err(error) => tracing::warn!(%error, "cluster-state topic not opened; trying again"),
            }
            tokio::select! {
                _ = tokio::time::sleep(TABLE_RETRY) => {}
                _ = shutdown.wait() => return,
            }
        },
    };
    while let Some(delivery) = next_delivery(&mut subscription, &shutdown).await {
        apply(&engine, &codec, &delivery.message);
    }
}
