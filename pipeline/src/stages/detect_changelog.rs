//! The detect stage on Kafka. Each input partition's windows and baselines (a shard of the engine) live in a
//! compacted changelog topic, written in the same transaction as the detections and the input offsets they cover:
//! for a detector whose state is keyed (a container's windows, an identity's profile), a head record with the rest
//! of its state and one record per key that changed; for the others, one record with the whole state. An instance
//! that is given a partition reads its state from the changelog before its first input; one that loses it forgets
//! it. So any number of detect instances share the input topics, and a killed or moved one loses no window,
//! baseline or join. Without Kafka the stage keeps its file checkpoint (`detect.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_detect::engine::{Pass, StateChange};
use palisade_detect::unit::{PodContext, StateKey};
use palisade_detect::{Engine, Event};
use palisade_runtime::bus::Outgoing;
use palisade_runtime::kafka::TransactionalOutput;
use palisade_runtime::trace::RecordSpan;
use palisade_runtime::{Bus, Delivery, KafkaConfig, Message, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{AuditEvent, CloudActivity, Codec, Detection, NodeEvent};
use palisade_telemetry::{
    CheckpointWritten, ComponentStarted, ComponentStopped, ItemDropped, MessageProcessed, RecordProduced,
};
use serde::{Deserialize, Serialize};

use super::{DeadLetters, dead_letter_until_acked, next_delivery, now_ms, publish_until_acked};
use crate::PipelineError;

const STAGE: &str = "detect";
/// Inputs in one transaction at most, whatever the interval.
const MAX_BATCH_INPUTS: usize = 20_000;
/// Bytes of inputs and records in one transaction at most (a backlog of large events makes smaller ones).
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// How the stage keeps its state in Kafka.
#[derive(Debug, Clone)]
pub struct ChangelogSettings {
    pub kafka: KafkaConfig,
    pub transactional_id: String,
    pub commit_every: Duration,
}

impl ChangelogSettings {
    pub fn from_config(kafka: &KafkaConfig, detect: &palisade_detect::DetectConfig) -> Self {
        let transactional_id = detect.transactional_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("palisade-detect-{}", host.trim())
        });
        Self {
            kafka: kafka.clone(),
            transactional_id,
            commit_every: Duration::from_millis(detect.commit_interval_ms.max(1)),
        }
    }
}

/// One changelog record's value: a detector's state in one shard, and the input offset it covers. A state over
/// the record bound is written in chunks (`<key>#<n>`, raw slices of its JSON) that this head counts. A keyed
/// state's head holds the rest of it and names the field its entries go in; each entry is a record of its own
/// (`<key>/<entry key>`, the entry's JSON; empty when the entry is gone).
#[derive(Debug, Serialize, Deserialize)]
struct StateRecord {
    offset: i64,
    watermark_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunks: Option<u32>,
}

/// Room kept in a chunk record for its key and Kafka's framing.
const CHUNK_OVERHEAD_BYTES: usize = 1024;

/// The changelog records of one detector's state, or of a keyed state's rest (key, payload; an empty payload
/// deletes): the state in one record when it fits `limit`, else a head and its chunks, so a state of any size is
/// kept whole. Chunks of a previous, longer write (`previous_chunks`) are deleted. Returns the records and the
/// chunk count.
fn state_records(
    key: &str,
    (offset, watermark_ms): (i64, i64),
    (state, keyed): (&[u8], Option<&str>),
    limit: usize,
    previous_chunks: u32,
) -> (Vec<(String, Vec<u8>)>, u32) {
    // The field name is a detector's constant (`KeyedChanges::field`), never input: no escaping needed.
    let keyed = keyed.map(|field| format!(",\"keyed\":\"{field}\"")).unwrap_or_default();
    let head = |chunks: Option<u32>| {
        format!(
            "{{\"offset\":{offset},\"watermark_ms\":{watermark_ms}{keyed}{}",
            match chunks {
                Some(n) => format!(",\"chunks\":{n}}}"),
                None => ",\"state\":".to_owned(),
            }
        )
    };
    let whole = head(None);
    let mut records = Vec::new();
    let chunks = if whole.len() + state.len() + 1 + key.len() <= limit {
        let mut payload = whole.into_bytes();
        payload.extend_from_slice(state);
        payload.push(b'}');
        records.push((key.to_owned(), payload));
        0
    } else {
        let size = limit.saturating_sub(CHUNK_OVERHEAD_BYTES + key.len()).max(1);
        let pieces: Vec<&[u8]> = state.chunks(size).collect();
        let count = pieces.len() as u32;
        records.push((key.to_owned(), head(Some(count)).into_bytes()));
        records.extend(pieces.into_iter().enumerate().map(|(n, piece)| (format!("{key}#{n}"), piece.to_vec())));
        count
    };
    records.extend((chunks..previous_chunks).map(|n| (format!("{key}#{n}"), Vec::new())));
    (records, chunks)
}

/// What the changelog holds of one detector from earlier writes.
#[derive(Debug, Default)]
struct Written {
    previous_chunks: u32,
    /// Entry records known not to be part of the state (deleted with the next keyed write).
    stale_entries: Vec<String>,
}

/// The records of one detector's change.
#[derive(Debug, Default)]
struct ChangeRecords {
    /// (key, payload); an empty payload deletes.
    records: Vec<(String, Vec<u8>)>,
    /// The chunks its head is written in now.
    chunks: u32,
    /// Entries over the record bound, deleted instead of written.
    over_bound: u64,
}

/// The changelog records of one detector's change under `key`: its whole state, or a keyed state's head and one
/// record per changed entry (deleted when the entry is gone). The stale entries the changelog holds (records known
/// not to be part of the state) are deleted too, unless this write writes their key. An entry over `limit` is
/// deleted instead of written (that key starts empty after a restore), counted.
fn change_records(
    key: &str,
    at: (i64, i64),
    change: StateChange,
    limit: usize,
    written: Written,
) -> Result<ChangeRecords, serde_json::Error> {
    let (state, field, mut entries) = match change {
        StateChange::Whole(state) => (state, None, Vec::new()),
        StateChange::Keyed(keyed) => (keyed.rest, Some(keyed.field), keyed.entries),
    };
    if field.is_some() && !written.stale_entries.is_empty() {
        let present: BTreeSet<&str> = entries.iter().map(|(entry, _)| entry.as_str()).collect();
        let gone: Vec<String> =
            written.stale_entries.into_iter().filter(|entry| !present.contains(entry.as_str())).collect();
        entries.extend(gone.into_iter().map(|entry| (entry, None)));
    }
    let state = serde_json::to_vec(&state)?;
    let (mut records, chunks) = state_records(key, at, (&state, field), limit, written.previous_chunks);
    let mut over_bound = 0;
    for (entry, value) in entries {
        let name = format!("{key}/{entry}");
        let payload = value.as_ref().map(serde_json::to_vec).transpose()?.unwrap_or_default();
        if name.len() + payload.len() + CHUNK_OVERHEAD_BYTES > limit {
            // Deleted rather than left as it was: a restore must not bring back an older state of the key.
            tracing::warn!(record = %name, bytes = payload.len(), "a key's state is over the record bound; not kept");
            over_bound += 1;
            records.push((name, Vec::new()));
            continue;
        }
        records.push((name, payload));
    }
    Ok(ChangeRecords { records, chunks, over_bound })
}

/// One shard's states read back from its records (newest per name, as `shard_records` gives them).
#[derive(Debug, Default, PartialEq)]
struct Assembled {
    states: BTreeMap<String, serde_json::Value>,
    /// The newest input offset any record covers.
    covered: Option<i64>,
    watermark_ms: i64,
    /// By checkpoint key: the chunks its state is written in now.
    chunks: BTreeMap<String, u32>,
    /// Detectors whose records do not read (they start empty).
    unreadable: Vec<String>,
    /// Detectors whose state was put together from a keyed head and its entries.
    keyed: BTreeSet<String>,
    /// By detector: the keys of its entry records (the stale ones among them are deleted with its next keyed
    /// write).
    entry_keys: BTreeMap<String, Vec<String>>,
    /// Entry records that do not read (left out of their detector's state), by detector.
    unreadable_entries: BTreeMap<String, Vec<String>>,
}

/// A record's name within its shard: a head (`<detector>`), a chunk (`<detector>#<n>`) or an entry of a keyed
/// state (`<detector>/<entry key>`; checkpoint keys have no `/`, an entry key may have anything).
fn entry_of(name: &str) -> Option<(&str, &str)> {
    name.split_once('/')
}

fn assemble(records: &BTreeMap<String, Vec<u8>>) -> Assembled {
    let mut out = Assembled::default();
    let mut entries: BTreeMap<&str, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for (name, payload) in records {
        let Some((detector, key)) = entry_of(name) else { continue };
        out.entry_keys.entry(detector.to_owned()).or_default().push(key.to_owned());
        match serde_json::from_slice(payload) {
            Ok(value) => {
                entries.entry(detector).or_default().insert(key.to_owned(), value);
            }
            Err(error) => {
                tracing::warn!(%detector, %error, "changelog entry unreadable; that key starts empty");
                out.unreadable_entries.entry(detector.to_owned()).or_default().push(key.to_owned());
            }
        }
    }
    let heads = records.iter().filter(|(name, _)| !name.contains('#') && entry_of(name).is_none());
    for (name, payload) in heads {
        let head = serde_json::from_slice::<StateRecord>(payload).map_err(|e| e.to_string());
        let state = head.and_then(|head| {
            out.covered = Some(out.covered.map_or(head.offset, |c| c.max(head.offset)));
            out.watermark_ms = out.watermark_ms.max(head.watermark_ms);
            let state = match (head.state, head.chunks) {
                (Some(state), _) => Ok(state),
                (None, Some(count)) => {
                    out.chunks.insert(name.clone(), count);
                    let mut whole = Vec::new();
                    for n in 0..count {
                        let piece =
                            records.get(&format!("{name}#{n}")).ok_or(format!("chunk {n} of {count} missing"))?;
                        whole.extend_from_slice(piece);
                    }
                    serde_json::from_slice(&whole).map_err(|e| e.to_string())
                }
                (None, None) => Err("neither a state nor chunks".to_owned()),
            }?;
            let Some(field) = head.keyed else { return Ok((state, false)) };
            let serde_json::Value::Object(mut rest) = state else {
                return Err("a keyed state's rest is not an object".to_owned());
            };
            let entries = entries.remove(name.as_str()).unwrap_or_default();
            rest.insert(field, serde_json::Value::Object(entries));
            Ok((serde_json::Value::Object(rest), true))
        });
        match state {
            Ok((state, keyed)) => {
                out.states.insert(name.clone(), state);
                if keyed {
                    out.keyed.insert(name.clone());
                }
            }
            Err(error) => {
                tracing::warn!(detector = %name, %error, "changelog record unreadable; that detector starts empty");
                out.unreadable.push(name.clone());
            }
        }
    }
    out
}

/// The shard an input partition feeds.
fn shard_of(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// A changelog key: the shard, then the detector's checkpoint key.
fn record_key(shard: &str, checkpoint_key: &str) -> String {
    format!("{shard}/{checkpoint_key}")
}

/// What the changelog holds for one shard: the newest record of each of its detectors (an empty value deletes).
fn shard_records(
    shard: &str,
    records: impl IntoIterator<Item = (Option<Vec<u8>>, Vec<u8>)>,
) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("{shard}/");
    let mut newest = BTreeMap::new();
    for (key, payload) in records {
        let Some(detector) = key.as_deref().and_then(|k| std::str::from_utf8(k).ok()?.strip_prefix(&prefix)) else {
            continue;
        };
        if payload.is_empty() {
            newest.remove(detector);
        } else {
            newest.insert(detector.to_owned(), payload);
        }
    }
    newest
}

/// What a restore found that later writes of the shard need.
#[derive(Debug, Default)]
struct Restored {
    /// The input offset the state covers.
    covered: Option<i64>,
    /// By detector: the chunks its state is written in now.
    chunks: BTreeMap<String, u32>,
    /// By detector: the entry records the changelog holds that are not part of its state (all of them for a
    /// detector not restored from them, the unreadable ones for one that was), deleted with its next keyed write
    /// so none comes back in a later restore.
    stale_entries: BTreeMap<String, Vec<String>>,
}

/// Reads a shard's state from its changelog partition and gives it to the engine. A record that does not read, or
/// a state a detector refuses, leaves that detector empty (counted): the detections go on, without its history;
/// an entry that does not read leaves that key out. A changelog ahead of its input partition (the topic was
/// recreated) is not used.
async fn restore(
    engine: &Engine,
    settings: &ChangelogSettings,
    changelog: (&str, i32),
    (topic, partition): (&str, i32),
) -> Result<Restored, PipelineError> {
    let shard = shard_of(topic, partition);
    let (kafka, changelog_topic, input) = (settings.kafka.clone(), changelog.0.to_owned(), topic.to_owned());
    let changelog_partition = partition % changelog.1;
    let started = Instant::now();
    let (read, input_end) = tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        palisade_runtime::kafka::read_partition(&kafka, &changelog_topic, changelog_partition, |message| {
            records.push((message.key, message.payload));
        })?;
        let input_end = palisade_runtime::kafka::high_watermark(&kafka, &input, partition)?;
        Ok::<_, palisade_runtime::BusError>((records, input_end))
    })
    .await
    .expect("the changelog read does not panic")?;
    let read_count = read.len();
    let mut assembled = assemble(&shard_records(&shard, read));
    let dropped = |reason: &'static str, count: usize| {
        if count > 0 {
            ItemDropped { component: STAGE, reason, count: count as u64 }.emit();
        }
    };
    dropped("changelog record unreadable", assembled.unreadable.len());
    dropped("changelog entry unreadable", assembled.unreadable_entries.values().map(Vec::len).sum());
    if assembled.covered.is_some_and(|covered| covered >= input_end) {
        tracing::warn!(%shard, covered = assembled.covered, input_end, "changelog ahead of its input (topic recreated?); not used");
        dropped("changelog ahead of its input", 1);
        engine.drop_shard(&shard);
        return Ok(Restored { covered: None, chunks: assembled.chunks, stale_entries: assembled.entry_keys });
    }
    let refused = engine.restore_shard(&shard, assembled.watermark_ms, &assembled.states);
    for (detector, error) in &refused {
        tracing::warn!(%shard, %detector, %error, "changelog state refused; that detector starts empty");
        assembled.keyed.remove(detector);
    }
    dropped("changelog state refused", refused.len());
    engine.record_changes_from_now(&shard, &assembled.keyed);
    for detector in &assembled.keyed {
        let unreadable = assembled.unreadable_entries.remove(detector).unwrap_or_default();
        assembled.entry_keys.insert(detector.clone(), unreadable);
    }
    assembled.entry_keys.retain(|_, keys| !keys.is_empty());
    tracing::info!(
        %shard,
        detectors = assembled.states.len() - refused.len(),
        changelog_records = read_count,
        covered = assembled.covered,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shard state restored"
    );
    Ok(Restored { covered: assembled.covered, chunks: assembled.chunks, stale_entries: assembled.entry_keys })
}

/// Bytes a re-keyed copy may have over the record bound (the topics and producers allow 1 KiB of framing).
const REKEYED_ROOM_BYTES: usize = 768;

/// Header of a re-keyed event: the `StateKey` it was re-keyed by.
const HEADER_REKEYED_BY: &str = "palisade.rekeyed.by";
/// Header of a re-keyed node event: the pod context it was seen with (JSON), for the workload baselines.
const HEADER_POD_CONTEXT: &str = "palisade.pod.context";

/// A record to send in the next transaction: a detection (keyed by alert id) or a re-keyed event.
struct PendingRecord {
    /// The shard whose input produced it (it is dropped if that partition is revoked before the commit).
    shard: String,
    topic: String,
    key: String,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    kind: &'static str,
}

/// Inputs received since the last transaction and what they produced.
#[derive(Default)]
struct Batch {
    records: Vec<PendingRecord>,
    consumed: Vec<(String, i32, i64)>,
    /// By shard: its partition and the newest offset of it in the batch.
    shards: BTreeMap<String, (i32, i64)>,
    started: Option<Instant>,
    /// Bytes of the inputs and of the records to send, so a backlog of large events makes small transactions.
    bytes: usize,
}

impl Batch {
    fn due_in(&self, every: Duration) -> Option<Duration> {
        let started = self.started?;
        if self.consumed.len() >= MAX_BATCH_INPUTS || self.bytes >= MAX_BATCH_BYTES {
            return Some(Duration::ZERO);
        }
        Some(every.saturating_sub(started.elapsed()))
    }
}

/// The stage's state between inputs.
struct Stage<'a> {
    bus: &'a Bus,
    topics: &'a TopicsConfig,
    engine: &'a Engine,
    settings: &'a ChangelogSettings,
    output: TransactionalOutput,
    changelog_partitions: i32,
    /// By shard held here: the input offset its restored state covers (inputs at or before it are in it).
    covered: HashMap<String, Option<i64>>,
    /// By changelog key: the chunks its state was last written in (their stale ones are deleted on the next write).
    chunks: HashMap<String, u32>,
    /// By changelog key: entry records a restore did not use, deleted with that detector's next keyed write.
    stale_entries: HashMap<String, Vec<String>>,
    batch: Batch,
    codecs: Codecs,
}

struct Codecs {
    node: Codec<NodeEvent>,
    audit: Codec<AuditEvent>,
    cloud: Codec<CloudActivity>,
    detection: Codec<Detection>,
}

impl Stage<'_> {
    /// Forgets the partitions another member took, and takes their inputs, and what they produced, out of the
    /// batch: the new owner receives them again from the committed offset (no seek here: the other partitions'
    /// inputs and state stay as they are and are committed with the next transaction).
    fn handle_revocations(&mut self, subscription: &Subscription) {
        let revoked: BTreeSet<String> =
            subscription.take_revoked().iter().map(|(topic, partition)| shard_of(topic, *partition)).collect();
        if revoked.is_empty() {
            return;
        }
        for shard in &revoked {
            self.engine.drop_shard(shard);
            self.covered.remove(shard);
            self.batch.shards.remove(shard);
            let prefix = format!("{shard}/");
            self.stale_entries.retain(|key, _| !key.starts_with(&prefix));
        }
        let inputs = self.batch.consumed.len();
        self.batch.consumed.retain(|(topic, partition, _)| !revoked.contains(&shard_of(topic, *partition)));
        self.batch.records.retain(|record| !revoked.contains(&record.shard));
        let taken = inputs - self.batch.consumed.len();
        if taken > 0 {
            tracing::info!(inputs = taken, "inputs of revoked partitions left to their new owner");
        }
        if self.batch.consumed.is_empty() {
            self.batch = Batch::default();
        }
    }

    async fn receive(&mut self, delivery: Delivery, shutdown: &Shutdown) -> Result<bool, PipelineError> {
        let message = &delivery.message;
        let shard = shard_of(&message.topic, message.partition);
        if !self.covered.contains_key(&shard) {
            let changelog = (self.topics.detect_changelog.as_str(), self.changelog_partitions);
            let input = (message.topic.as_str(), message.partition);
            // Not ready while it restores (a rolling update waits): the partition's inputs wait behind it.
            palisade_telemetry::health::busy(STAGE, &format!("restoring {shard}"));
            let restored = restore(self.engine, self.settings, changelog, input).await;
            palisade_telemetry::health::idle(STAGE);
            let restored = restored?;
            self.covered.insert(shard.clone(), restored.covered);
            for (detector, count) in restored.chunks {
                self.chunks.insert(record_key(&shard, &detector), count);
            }
            for (detector, keys) in restored.stale_entries {
                self.stale_entries.insert(record_key(&shard, &detector), keys);
            }
        }
        self.batch.started.get_or_insert_with(Instant::now);
        self.batch.consumed.push((message.topic.clone(), message.partition, message.offset));
        self.batch.bytes += message.payload.len();
        let newest = self.batch.shards.entry(shard.clone()).or_insert((message.partition, message.offset));
        newest.1 = newest.1.max(message.offset);
        // Already in the restored state (its offset was not committed with it): counted once, not twice.
        if self.covered.get(&shard).copied().flatten().is_some_and(|covered| message.offset <= covered) {
            return Ok(true);
        }
        let record = RecordSpan::start(STAGE, &message.headers);
        let detected_at = now_ms();
        let trace: Vec<(String, Vec<u8>)> =
            record.header().into_iter().map(|(name, value)| (name.to_owned(), value.to_vec())).collect();
        let (topics, engine, codecs) = (self.topics, self.engine, &self.codecs);
        let mut rekeys = Vec::new();
        let mut input = |event: Event<'_>| {
            rekeys = engine.rekeys(&event);
            engine.process_in(&shard, Pass::Input, &event, detected_at)
        };
        let decoded: Result<Vec<Detection>, String> = if message.topic == topics.node_events {
            codecs.node.decode(&message.payload).map(|e| input(Event::Node(&e))).map_err(|e| e.to_string())
        } else if message.topic == topics.audit_events {
            codecs.audit.decode(&message.payload).map(|e| input(Event::Audit(&e))).map_err(|e| e.to_string())
        } else if message.topic == topics.cloud_activity {
            codecs.cloud.decode(&message.payload).map(|e| input(Event::Cloud(&e))).map_err(|e| e.to_string())
        } else {
            self.rekeyed(message, &shard, detected_at)
        };
        let detections = match decoded {
            Ok(detections) => detections,
            Err(reason) => {
                return Ok(
                    dead_letter_until_acked(self.bus, &topics.dead_letter, STAGE, &delivery, &reason, shutdown).await
                );
            }
        };
        if let Some(detection) = detections.first() {
            record.alert_type(&detection.alert_type);
        }
        for detection in &detections {
            self.batch.bytes += detection.evidence.iter().map(String::len).sum::<usize>();
            self.batch.records.push(PendingRecord {
                shard: shard.clone(),
                topic: topics.detections.clone(),
                key: detection.id.clone(),
                payload: self.codecs.detection.encode(detection)?,
                headers: trace.clone(),
                kind: "Detection",
            });
        }
        // The same bytes again under each key other detectors' state needs, in this input's transaction.
        for rekey in rekeys {
            let mut headers = trace.clone();
            headers.push((HEADER_REKEYED_BY.to_owned(), rekey.key.name().as_bytes().to_vec()));
            // What the workload baselines key by; the labels and image (unbounded) stay behind.
            if let Some(context) = rekey.context {
                let context = PodContext { labels: Default::default(), image: None, ..context };
                headers.push((HEADER_POD_CONTEXT.to_owned(), serde_json::to_vec(&context).unwrap_or_default()));
            }
            self.batch.bytes += message.payload.len();
            self.batch.records.push(PendingRecord {
                shard: shard.clone(),
                topic: topics.detect_rekeyed.clone(),
                key: rekey.record_key,
                payload: message.payload.clone(),
                headers,
                kind: "RekeyedEvent",
            });
        }
        Ok(true)
    }

    /// Detections of a re-keyed event, by the detectors keyed as its header says.
    fn rekeyed(&self, message: &Message, shard: &str, detected_at: i64) -> Result<Vec<Detection>, String> {
        let by = message.header(HEADER_REKEYED_BY).and_then(|name| std::str::from_utf8(name).ok());
        let Some(key) = by.and_then(StateKey::from_name) else {
            return Err(format!("re-keyed event without a known {HEADER_REKEYED_BY} header"));
        };
        let context: Option<PodContext> = match message.header(HEADER_POD_CONTEXT) {
            Some(json) => Some(serde_json::from_slice(json).map_err(|e| format!("{HEADER_POD_CONTEXT}: {e}"))?),
            None => None,
        };
        let pass = Pass::Rekeyed { key, context: context.as_ref() };
        match key {
            StateKey::AuditUser | StateKey::AuditCluster => self
                .codecs
                .audit
                .decode(&message.payload)
                .map(|event| self.engine.process_in(shard, pass, &Event::Audit(&event), detected_at)),
            StateKey::PodNamespace => self
                .codecs
                .node
                .decode(&message.payload)
                .map(|event| self.engine.process_in(shard, pass, &Event::Node(&event), detected_at)),
            StateKey::Input => return Err("re-keyed event keyed as its input".into()),
        }
        .map_err(|e| e.to_string())
    }

    /// One transaction: the detections, the changed state, the inputs' offsets. A failure stops the stage.
    async fn commit(&mut self, shutdown: &Shutdown) -> Result<bool, PipelineError> {
        let limit = self.bus.max_message_bytes();
        let mut changes = Vec::new();
        let mut over_bound = 0;
        for shard_changes in self.engine.take_changes() {
            let Some(&(partition, offset)) = self.batch.shards.get(&shard_changes.shard) else { continue };
            let changelog_partition = partition % self.changelog_partitions;
            for (checkpoint_key, change) in shard_changes.states {
                let key = record_key(&shard_changes.shard, checkpoint_key);
                let written = Written {
                    previous_chunks: self.chunks.get(&key).copied().unwrap_or_default(),
                    stale_entries: self.stale_entries.remove(&key).unwrap_or_default(),
                };
                let records = change_records(&key, (offset, shard_changes.watermark_ms), change, limit, written)
                    .map_err(|e| PipelineError::Changelog {
                        topic: self.topics.detect_changelog.clone(),
                        reason: e.to_string(),
                    })?;
                self.chunks.insert(key, records.chunks);
                over_bound += records.over_bound;
                changes.extend(records.records.into_iter().map(|(key, payload)| (changelog_partition, key, payload)));
            }
        }
        if over_bound > 0 {
            ItemDropped { component: STAGE, reason: "changelog entry over the bound", count: over_bound }.emit();
        }
        // A record over the bound could never commit: it goes (to the dead-letter topic) on its own.
        let dead_letters = DeadLetters { topic: &self.topics.dead_letter, stage: STAGE };
        let mut pending = Vec::with_capacity(self.batch.records.len());
        for record in std::mem::take(&mut self.batch.records) {
            let headers: Vec<(&str, &[u8])> = record.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
            let outgoing = Outgoing {
                topic: &record.topic,
                key: Some(record.key.as_bytes()),
                payload: &record.payload,
                headers: &headers,
            };
            // A re-keyed copy carries a longer key and its headers besides its input's bytes: it may use the
            // room the topics keep over the bound for framing.
            let bound = if record.topic == self.topics.detect_rekeyed { limit + REKEYED_ROOM_BYTES } else { limit };
            if palisade_runtime::kafka::outgoing_bytes(&outgoing) > bound {
                if !publish_until_acked(self.bus, outgoing, dead_letters, shutdown).await {
                    return Ok(false);
                }
                continue;
            }
            drop(headers);
            pending.push(record);
        }
        let header_refs: Vec<Vec<(&str, &[u8])>> = (pending.iter())
            .map(|record| record.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect())
            .collect();
        let records: Vec<Outgoing<'_>> = (pending.iter().zip(&header_refs))
            .map(|(record, headers)| Outgoing {
                topic: &record.topic,
                key: Some(record.key.as_bytes()),
                payload: &record.payload,
                headers,
            })
            .collect();
        let changelog: Vec<(i32, Outgoing<'_>)> = (changes.iter())
            .map(|(partition, key, payload)| {
                let outgoing =
                    Outgoing { topic: &self.topics.detect_changelog, key: Some(key.as_bytes()), payload, headers: &[] };
                (*partition, outgoing)
            })
            .collect();
        match self.output.commit_with_changes(&records, &changelog, &self.batch.consumed).await {
            Ok(()) => {
                palisade_telemetry::health::succeeded(STAGE);
                for _ in &self.batch.consumed {
                    MessageProcessed { stage: STAGE }.emit();
                }
                for record in &pending {
                    RecordProduced { stage: STAGE, record: record.kind }.emit();
                }
                CheckpointWritten { stage: STAGE, held: self.batch.consumed.len() }.emit();
                self.batch = Batch::default();
                Ok(true)
            }
            // The windows hold inputs no transaction committed: the stage stops, and a restart (or another
            // instance) restores the last committed state and receives them again.
            Err(error) => {
                palisade_telemetry::health::failing(STAGE, &format!("transaction failed: {error}"));
                tracing::error!(%error, inputs = self.batch.consumed.len(), "transaction failed; stopping");
                Err(error.into())
            }
        }
    }
}

/// Runs the stage with its state in `topics.detect_changelog` (Kafka only).
pub async fn run(
    bus: Bus,
    mut subscription: Subscription,
    topics: TopicsConfig,
    engine: Arc<Engine>,
    settings: ChangelogSettings,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let Some(output) = subscription.transactional_output(&bus, &settings.transactional_id).await? else {
        let (topic, reason) = (topics.detect_changelog.clone(), "the changelog needs the Kafka bus".into());
        return Err(PipelineError::Changelog { topic, reason });
    };
    // A topic this process just created may take a moment to show in the metadata.
    let (kafka, changelog_topic) = (settings.kafka.clone(), topics.detect_changelog.clone());
    let changelog_partitions = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match palisade_runtime::kafka::partition_count(&kafka, &changelog_topic) {
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "changelog topic not known yet");
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    })
    .await
    .expect("the metadata request does not panic")?;
    let mut stage = Stage {
        bus: &bus,
        topics: &topics,
        engine: &engine,
        settings: &settings,
        output,
        changelog_partitions,
        covered: HashMap::new(),
        chunks: HashMap::new(),
        stale_entries: HashMap::new(),
        batch: Batch::default(),
        codecs: Codecs { node: Codec::new()?, audit: Codec::new()?, cloud: Codec::new()?, detection: Codec::new()? },
    };
    ComponentStarted { component: STAGE }.emit();
    let mut learning_report = tokio::time::interval(super::detect::LEARNING_REPORT_EVERY);
    learning_report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent_all = true;
    loop {
        stage.handle_revocations(&subscription);
        let due = stage.batch.due_in(settings.commit_every);
        if due == Some(Duration::ZERO) {
            if !stage.commit(&shutdown).await? {
                sent_all = false;
                break;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(due.unwrap_or_default()), if due.is_some() => {}
            _ = learning_report.tick() => super::detect::report_learning(&engine),
            next = next_delivery(&mut subscription, &shutdown) => {
                let Some(delivery) = next else { break };
                if !stage.receive(delivery, &shutdown).await? {
                    sent_all = false;
                    break;
                }
            }
        }
    }
    stage.handle_revocations(&subscription);
    if sent_all && stage.batch.started.is_some() {
        stage.commit(&shutdown).await?;
    }
    super::detect::report_learning(&engine);
    subscription.close()?;
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_over_the_bound_is_written_in_chunks_and_read_back_whole() {
        let state = serde_json::json!({"profiles": (0..500).map(|n| format!("key-{n}")).collect::<Vec<_>>()});
        let bytes = serde_json::to_vec(&state).unwrap();
        let key = "t/3/K8S_X";
        // Fits: one record with the state in it, and the stale chunks of an earlier write deleted.
        let (records, chunks) = state_records(key, (41, 7), (&bytes, None), 1 << 20, 2);
        assert_eq!(chunks, 0);
        let names: Vec<_> = records.iter().map(|(name, payload)| (name.as_str(), payload.is_empty())).collect();
        assert_eq!(names, [(key, false), ("t/3/K8S_X#0", true), ("t/3/K8S_X#1", true)]);
        // Too large for one record: a head and chunks, each within the bound.
        let limit = CHUNK_OVERHEAD_BYTES + 2000;
        let (records, chunks) = state_records(key, (42, 8), (&bytes, None), limit, 0);
        assert!(chunks > 1 && records.len() == chunks as usize + 1, "{chunks} chunks");
        assert!(records.iter().all(|(name, payload)| name.len() + payload.len() <= limit));
        let newest: BTreeMap<String, Vec<u8>> = records
            .iter()
            .map(|(name, payload)| (name.strip_prefix("t/3/").unwrap().to_owned(), payload.clone()))
            .collect();
        let assembled = assemble(&newest);
        assert_eq!(assembled.states.get("K8S_X"), Some(&state));
        assert_eq!((assembled.covered, assembled.watermark_ms), (Some(42), 8));
        assert_eq!(assembled.chunks.get("K8S_X"), Some(&chunks));
        // A chunk missing (or a head that does not read): that detector only is unreadable.
        let mut partial = newest.clone();
        partial.remove("K8S_X#1");
        partial.insert("K8S_Y".into(), b"not json".to_vec());
        let assembled = assemble(&partial);
        assert!(assembled.states.is_empty());
        assert_eq!(assembled.unreadable, ["K8S_X", "K8S_Y"]);
    }

    /// What a compacted changelog partition gives back after `records` were written in order.
    fn log(records: &[(String, Vec<u8>)]) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        records.iter().map(|(key, payload)| (Some(key.as_bytes().to_vec()), payload.clone())).collect()
    }

    #[test]
    fn a_keyed_change_is_a_head_and_a_record_per_entry_and_reads_back_whole() {
        let limit = 4096;
        let keyed = |all, entries: Vec<(&str, Option<serde_json::Value>)>| {
            StateChange::Keyed(palisade_detect::unit::KeyedChanges {
                field: "keys",
                all,
                rest: serde_json::json!({"late_events": 2}),
                entries: entries.into_iter().map(|(key, value)| (key.to_owned(), value)).collect(),
            })
        };
        // Every entry, over a whole state written in two chunks before and two entries a restore did not use.
        let big = serde_json::Value::String("x".repeat(limit));
        let change = keyed(true, vec![("n1/c#1", Some(serde_json::json!(1))), ("n1/c2", Some(big))]);
        let written = Written { previous_chunks: 2, stale_entries: vec!["n1/c#1".into(), "gone".into()] };
        let out = change_records("t/0/D", (41, 7), change, limit, written).unwrap();
        let names: Vec<(&str, bool)> = out.records.iter().map(|(name, p)| (name.as_str(), p.is_empty())).collect();
        assert_eq!(
            names,
            [
                ("t/0/D", false),
                ("t/0/D#0", true),
                ("t/0/D#1", true),
                ("t/0/D/n1/c#1", false),
                ("t/0/D/n1/c2", true),
                ("t/0/D/gone", true)
            ],
            "the head, the old chunks deleted, the entry, the one over the bound deleted, the stale one deleted"
        );
        assert_eq!((out.chunks, out.over_bound), (0, 1));
        let mut history = out.records;
        // Then only what changed: one entry updated, one gone.
        let change = keyed(false, vec![("n1/c#1", Some(serde_json::json!(5))), ("n2/c", None)]);
        let out = change_records("t/0/D", (42, 8), change, limit, Written::default()).unwrap();
        assert_eq!(out.records.len(), 3);
        history.extend(out.records);
        // Beside it, a detector written whole the old way, with an entry record left from a keyed write.
        history.push(("t/0/E".into(), br#"{"offset":40,"watermark_ms":6,"state":{"k":1}}"#.to_vec()));
        history.push(("t/0/E/left".into(), b"3".to_vec()));
        history.push(("t/0/D/bad".into(), b"{not json".to_vec()));

        let assembled = assemble(&shard_records("t/0", log(&history)));
        assert_eq!(assembled.states["D"], serde_json::json!({"late_events": 2, "keys": {"n1/c#1": 5}}));
        assert_eq!(assembled.states["E"], serde_json::json!({"k": 1}));
        assert_eq!((assembled.covered, assembled.watermark_ms), (Some(42), 8));
        assert_eq!(assembled.keyed, BTreeSet::from(["D".to_owned()]));
        assert_eq!(assembled.unreadable_entries["D"], ["bad"]);
        assert_eq!(assembled.entry_keys["E"], ["left"]);
        assert!(assembled.unreadable.is_empty());
    }

    fn exec(container: usize, command: &str, at_ms: i64) -> NodeEvent {
        let text = include_str!("../../../schemas/fixtures/node_event.v1.json");
        let mut event: NodeEvent = serde_json::from_str(text).unwrap();
        event.event_id = format!("t/{container}/{at_ms}/{command}");
        event.kind = palisade_schemas::NodeEventKind::Exec;
        event.timestamp_ms = at_ms;
        event.comm = command.into();
        event.executable = Some(format!("/usr/bin/{command}"));
        event.argv = vec![command.into()];
        event.container_id = Some(format!("{container:0>64x}"));
        event.net = None;
        event
    }

    #[test]
    fn the_engine_writes_only_the_windows_that_changed_and_a_restored_shard_goes_on_from_them() {
        let config = palisade_detect::DetectConfig::default();
        let engine = Engine::new(&config).unwrap();
        let at = 1_764_000_000_000;
        let mut history = Vec::new();
        let mut commit = |engine: &Engine, offset: i64| {
            let mut entries = 0;
            for changes in engine.take_changes() {
                for (detector, change) in changes.states {
                    if let StateChange::Keyed(keyed) = &change {
                        entries += keyed.entries.len();
                    }
                    let key = record_key(&changes.shard, detector);
                    let out = change_records(&key, (offset, changes.watermark_ms), change, 1 << 20, Written::default());
                    history.extend(out.unwrap().records);
                }
            }
            entries
        };
        // Ten containers with two recon commands each: every window is written once.
        for container in 0..10 {
            for command in ["whoami", "id"] {
                assert!(
                    engine.process_in("t/0", Pass::Input, &Event::Node(&exec(container, command, at)), at).is_empty()
                );
            }
        }
        assert_eq!(commit(&engine, 19), 10);
        // One container's third command: its window only.
        engine.process_in("t/0", Pass::Input, &Event::Node(&exec(3, "uname", at + 1)), at);
        assert_eq!(commit(&engine, 20), 1);

        let restored = Engine::new(&config).unwrap();
        let assembled = assemble(&shard_records("t/0", log(&history)));
        assert!(assembled.keyed.contains("K8S.NODE_ReconnaissanceArtifactsBurst"), "{:?}", assembled.keyed);
        assert!(restored.restore_shard("t/0", assembled.watermark_ms, &assembled.states).is_empty());
        restored.record_changes_from_now("t/0", &assembled.keyed);
        assert!(restored.take_changes().iter().all(|c| c.states.iter().all(|(_, change)| match change {
            StateChange::Keyed(keyed) => !keyed.all && keyed.entries.is_empty(),
            StateChange::Whole(_) => true,
        })));
        // The same fourth command completes container 3's burst in both; container 5 needs two more there.
        for engine in [&engine, &restored] {
            let fourth = engine.process_in("t/0", Pass::Input, &Event::Node(&exec(3, "hostname", at + 2)), at);
            assert_eq!(
                fourth.iter().map(|d| d.alert_type.as_str()).collect::<Vec<_>>(),
                ["K8S.NODE_ReconnaissanceArtifactsBurst"]
            );
            assert!(engine.process_in("t/0", Pass::Input, &Event::Node(&exec(5, "uname", at + 2)), at).is_empty());
            let fired = engine.process_in("t/0", Pass::Input, &Event::Node(&exec(5, "hostname", at + 3)), at);
            assert_eq!(fired.len(), 1, "container 5's window came back with its two commands");
        }
    }

    #[test]
    fn a_shard_gets_the_newest_record_of_each_of_its_detectors_only() {
        let record = |key: &str, payload: &str| (Some(key.as_bytes().to_vec()), payload.as_bytes().to_vec());
        let records = vec![
            record("palisade.node.events/1/A", "old"),
            record("palisade.node.events/10/A", "other shard"),
            record("palisade.node.events/1/B", "gone"),
            record("palisade.node.events/1/A", "new"),
            record("palisade.node.events/1/B", ""),
            (None, b"no key".to_vec()),
        ];
        let newest = shard_records("palisade.node.events/1", records);
        assert_eq!(newest, BTreeMap::from([("A".to_owned(), b"new".to_vec())]));
    }
}
