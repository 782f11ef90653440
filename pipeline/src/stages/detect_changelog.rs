//! The detect stage on Kafka. Each input partition's windows and baselines (a shard of the engine) live in a
//! compacted changelog topic: one record per partition and detector whose state changed, written in the same
//! transaction as the detections and the input offsets they cover. An instance that is given a partition reads
//! its state from the changelog before its first input; one that loses it forgets it. So any number of detect
//! instances share the input topics, and a killed or moved one loses no window, baseline or join. Without Kafka
//! the stage keeps its file checkpoint (`detect.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_detect::engine::Pass;
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
/// the record bound is written in chunks (`<key>#<n>`, raw slices of its JSON) that this head counts.
#[derive(Debug, Serialize, Deserialize)]
struct StateRecord {
    offset: i64,
    watermark_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunks: Option<u32>,
}

/// Room kept in a chunk record for its key and Kafka's framing.
const CHUNK_OVERHEAD_BYTES: usize = 1024;

/// The changelog records of one detector's state (key, payload; an empty payload deletes): the state in one
/// record when it fits `limit`, else a head and its chunks, so a state of any size is kept whole. Chunks of a
/// previous, longer write (`previous_chunks`) are deleted. Returns the records and the chunk count.
fn state_records(
    key: &str,
    (offset, watermark_ms): (i64, i64),
    state: &[u8],
    limit: usize,
    previous_chunks: u32,
) -> (Vec<(String, Vec<u8>)>, u32) {
    let head = |chunks: Option<u32>| {
        format!(
            "{{\"offset\":{offset},\"watermark_ms\":{watermark_ms}{}",
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
}

fn assemble(records: &BTreeMap<String, Vec<u8>>) -> Assembled {
    let mut out = Assembled::default();
    for (name, payload) in records.iter().filter(|(name, _)| !name.contains('#')) {
        let head = serde_json::from_slice::<StateRecord>(payload).map_err(|e| e.to_string());
        let state = head.and_then(|head| {
            out.covered = Some(out.covered.map_or(head.offset, |c| c.max(head.offset)));
            out.watermark_ms = out.watermark_ms.max(head.watermark_ms);
            match (head.state, head.chunks) {
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
            }
        });
        match state {
            Ok(state) => {
                out.states.insert(name.clone(), state);
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

/// Reads a shard's state from its changelog partition and gives it to the engine; returns the input offset it
/// covers and the chunk counts of its detectors. A record that does not read, or a state a detector refuses,
/// leaves that detector empty (counted): the detections go on, without its history. A changelog ahead of its
/// input partition (the topic was recreated) is not used.
async fn restore(
    engine: &Engine,
    settings: &ChangelogSettings,
    changelog: (&str, i32),
    (topic, partition): (&str, i32),
) -> Result<(Option<i64>, BTreeMap<String, u32>), PipelineError> {
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
    let assembled = assemble(&shard_records(&shard, read));
    let dropped = |reason: &'static str, count: usize| {
        ItemDropped { component: STAGE, reason, count: count as u64 }.emit();
    };
    dropped("changelog record unreadable", assembled.unreadable.len());
    if assembled.covered.is_some_and(|covered| covered >= input_end) {
        tracing::warn!(%shard, covered = assembled.covered, input_end, "changelog ahead of its input (topic recreated?); not used");
        dropped("changelog ahead of its input", 1);
        engine.drop_shard(&shard);
        return Ok((None, assembled.chunks));
    }
    let refused = engine.restore_shard(&shard, assembled.watermark_ms, &assembled.states);
    for (detector, error) in &refused {
        tracing::warn!(%shard, %detector, %error, "changelog state refused; that detector starts empty");
    }
    dropped("changelog state refused", refused.len());
    tracing::info!(
        %shard,
        detectors = assembled.states.len() - refused.len(),
        changelog_records = read_count,
        covered = assembled.covered,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shard state restored"
    );
    Ok((assembled.covered, assembled.chunks))
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
            let (covered, chunks) = restore(self.engine, self.settings, changelog, input).await?;
            self.covered.insert(shard.clone(), covered);
            for (detector, count) in chunks {
                self.chunks.insert(record_key(&shard, &detector), count);
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
        for shard_changes in self.engine.take_changes() {
            let Some(&(partition, offset)) = self.batch.shards.get(&shard_changes.shard) else { continue };
            for (checkpoint_key, state) in shard_changes.states {
                let state = serde_json::to_vec(&state).map_err(|e| PipelineError::Changelog {
                    topic: self.topics.detect_changelog.clone(),
                    reason: e.to_string(),
                })?;
                let key = record_key(&shard_changes.shard, checkpoint_key);
                let previous = self.chunks.get(&key).copied().unwrap_or_default();
                let (records, count) =
                    state_records(&key, (offset, shard_changes.watermark_ms), &state, limit, previous);
                self.chunks.insert(key, count);
                let changelog_partition = partition % self.changelog_partitions;
                changes.extend(records.into_iter().map(|(key, payload)| (changelog_partition, key, payload)));
            }
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
        let (records, chunks) = state_records(key, (41, 7), &bytes, 1 << 20, 2);
        assert_eq!(chunks, 0);
        let names: Vec<_> = records.iter().map(|(name, payload)| (name.as_str(), payload.is_empty())).collect();
        assert_eq!(names, [(key, false), ("t/3/K8S_X#0", true), ("t/3/K8S_X#1", true)]);
        // Too large for one record: a head and chunks, each within the bound.
        let limit = CHUNK_OVERHEAD_BYTES + 2000;
        let (records, chunks) = state_records(key, (42, 8), &bytes, limit, 0);
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
