//! The detect stage: node, audit and cloud events in, detections out.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use palisade_detect::{DetectConfig, Engine, Event};
use palisade_runtime::bus::Outgoing;
use palisade_runtime::trace::RecordSpan;
use palisade_runtime::{Bus, Delivery, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{AuditEvent, CloudActivity, Codec, Detection, NodeEvent};
use palisade_telemetry::{
    BaselineLearning, CheckpointWritten, ComponentStarted, ComponentStopped, ItemDropped, MessageProcessed,
    RecordProduced, WindowLateEvents,
};

use super::{DeadLetters, dead_letter_until_acked, next_delivery, now_ms, publish_until_acked};
use crate::PipelineError;

const STAGE: &str = "detect";

/// The inputs; with the state in Kafka also the events this stage re-keys for itself (see `detect_changelog`),
/// in a cooperative group.
pub fn subscribe(bus: &Bus, topics: &TopicsConfig, config: &DetectConfig) -> Result<Subscription, PipelineError> {
    let mut inputs = vec![topics.node_events.as_str(), &topics.audit_events, &topics.cloud_activity];
    let mut assignment = palisade_runtime::kafka::Assignment::Eager;
    if matches!(bus, Bus::Kafka(_)) && config.kafka_state {
        inputs.push(&topics.detect_rekeyed);
        assignment = palisade_runtime::kafka::Assignment::Cooperative;
    }
    Ok(bus.subscribe_with(&inputs, STAGE, assignment)?)
}

/// Inputs whose detections may be in flight to the bus at once (rdkafka batches the sends).
const MAX_IN_FLIGHT: usize = 1024;

/// How often the baselines' learning state goes to `/metrics`.
pub(crate) const LEARNING_REPORT_EVERY: Duration = Duration::from_secs(5);

pub(crate) fn report_learning(engine: &Engine) {
    for (alert_type, state) in engine.learning_states() {
        BaselineLearning { alert_type, learning: state.learning, active: state.active }.emit();
    }
    for (alert_type, total) in engine.late_events() {
        WindowLateEvents { alert_type, total }.emit();
    }
}

/// One input's detections being sent; resolves to whether they all were, with the input to acknowledge.
type Sending = Pin<Box<dyn Future<Output = (bool, Delivery)> + Send>>;

async fn send_detections(
    bus: Bus,
    (topic, dead_letter_topic): (String, String),
    payloads: Vec<(String, Vec<u8>)>,
    (delivery, record): (Delivery, RecordSpan),
    shutdown: Shutdown,
) -> (bool, Delivery) {
    let dead_letters = DeadLetters { topic: &dead_letter_topic, stage: STAGE };
    let headers: Vec<_> = record.header().into_iter().collect();
    for (key, payload) in &payloads {
        let outgoing = Outgoing { topic: &topic, key: Some(key.as_bytes()), payload, headers: &headers };
        if !publish_until_acked(&bus, outgoing, dead_letters, &shutdown).await {
            return (false, delivery);
        }
        RecordProduced { stage: STAGE, record: "Detection" }.emit();
    }
    MessageProcessed { stage: STAGE }.emit();
    (true, delivery)
}

/// Where and how often the windowed detectors' state is checkpointed.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    pub path: PathBuf,
    pub every: Duration,
    /// The detectors' configuration, to try a checkpoint on a scratch engine before the real one takes it.
    config: DetectConfig,
}

impl Checkpointing {
    pub fn from_config(config: &DetectConfig) -> Option<Self> {
        let path = config.state_path.clone()?;
        Some(Self { path, every: Duration::from_secs(config.checkpoint_secs.max(1)), config: config.clone() })
    }

    fn error(&self, reason: impl ToString) -> PipelineError {
        PipelineError::Checkpoint { path: self.path.display().to_string(), reason: reason.to_string() }
    }

    /// Restores the state a previous run saved, if there is one. A checkpoint that cannot be read back (damaged,
    /// or from an incompatible build) is moved aside as `<path>.corrupt-<unix ms>` with an error log and counted,
    /// and detect starts with empty windows: a bad file must not keep detection down. Returns where it went.
    fn restore(&self, engine: &Engine) -> Result<Option<PathBuf>, PipelineError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.error(error)),
        };
        // Tried on a scratch engine first: a checkpoint that fails half-way must not leave half its state behind.
        let scratch = Engine::new(&self.config)?;
        let state = serde_json::from_slice::<serde_json::Value>(&text).map_err(|e| e.to_string()).and_then(|state| {
            scratch.restore_window_state(&state).map_err(|e| e.to_string())?;
            Ok(state)
        });
        let reason = match state {
            Ok(state) => return engine.restore_window_state(&state).map(|()| None).map_err(|e| self.error(e)),
            Err(reason) => reason,
        };
        let aside = self.path.with_extension(format!("corrupt-{}", now_ms()));
        std::fs::rename(&self.path, &aside).map_err(|e| self.error(e))?;
        tracing::error!(
            path = %self.path.display(), moved_to = %aside.display(), %reason,
            "detector state checkpoint unreadable; moved aside, starting with empty windows"
        );
        ItemDropped { component: STAGE, reason: "checkpoint unreadable", count: 1 }.emit();
        Ok(Some(aside))
    }

    /// Writes the state beside the file, flushes it to disk, then renames it over and flushes the directory: a
    /// crash or power loss leaves the old or the new, never half of one.
    fn save(&self, engine: &Engine) -> Result<(), PipelineError> {
        use std::io::Write as _;
        let text = serde_json::to_vec(&engine.window_state()).map_err(|e| self.error(e))?;
        let partial = self.path.with_extension("partial");
        let parent = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| self.error(e))?;
        let mut file = std::fs::File::create(&partial).map_err(|e| self.error(e))?;
        file.write_all(&text).and_then(|()| file.sync_all()).map_err(|e| self.error(e))?;
        std::fs::rename(&partial, &self.path).map_err(|e| self.error(e))?;
        std::fs::File::open(parent).and_then(|dir| dir.sync_all()).map_err(|e| self.error(e))
    }
}

/// With checkpointing, inputs are acknowledged only once a checkpoint holding what they did to the windows is
/// written: after a crash, the saved state plus the redelivered inputs rebuild the windows exactly.
struct Acks {
    checkpointing: Option<Checkpointing>,
    held: Vec<Delivery>,
    last_saved: Instant,
}

impl Acks {
    fn settle(&mut self, delivery: Delivery) -> Result<(), PipelineError> {
        if self.checkpointing.is_none() {
            return Ok(delivery.ack()?);
        }
        self.held.push(delivery);
        Ok(())
    }

    /// How long until held inputs are due for a checkpoint, when some are held.
    fn due_in(&self) -> Option<Duration> {
        let checkpointing = self.checkpointing.as_ref()?;
        (!self.held.is_empty()).then(|| checkpointing.every.saturating_sub(self.last_saved.elapsed()))
    }

    fn flush(&mut self, engine: &Engine) -> Result<(), PipelineError> {
        if let Some(checkpointing) = &self.checkpointing {
            checkpointing.save(engine)?;
            CheckpointWritten { stage: STAGE, held: self.held.len() }.emit();
            self.last_saved = Instant::now();
        }
        for delivery in self.held.drain(..) {
            delivery.ack()?;
        }
        Ok(())
    }
}

/// Where the stage keeps its windows: in the changelog topic on Kafka, else in the checkpoint file (if any).
pub enum StateStore {
    File(Option<Checkpointing>),
    Changelog(super::detect_changelog::ChangelogSettings),
}

impl StateStore {
    pub fn from_config(bus: &Bus, kafka: Option<&palisade_runtime::KafkaConfig>, detect: &DetectConfig) -> Self {
        match (bus, kafka) {
            (Bus::Kafka(_), Some(kafka)) if detect.kafka_state => {
                if let Some(path) = &detect.state_path {
                    let path = path.display();
                    tracing::warn!(%path, "detect.state_path is not used with kafka_state: the state is in the changelog topic");
                }
                StateStore::Changelog(super::detect_changelog::ChangelogSettings::from_config(kafka, detect))
            }
            _ => StateStore::File(Checkpointing::from_config(detect)),
        }
    }
}

/// Runs the stage with its state where `store` says, and the cluster state (`table`, from
/// `cluster_state::subscribe`) read into the engine: on Kafka the whole topic first, then followed.
pub async fn run_with(
    bus: Bus,
    (subscription, table): (Subscription, Option<Subscription>),
    topics: TopicsConfig,
    engine: Arc<Engine>,
    store: StateStore,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let next = super::cluster_state::load(&bus, &topics, &engine).await;
    let follow = tokio::spawn(super::cluster_state::follow(
        bus.clone(),
        (topics.cluster_state.clone(), next),
        table,
        Arc::clone(&engine),
        shutdown.clone(),
    ));
    let _stop_following = AbortOnDrop(follow);
    match store {
        StateStore::File(checkpointing) => run(bus, subscription, topics, engine, checkpointing, shutdown).await,
        StateStore::Changelog(settings) => {
            super::detect_changelog::run(bus, subscription, topics, engine, settings, shutdown).await
        }
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the stage with its state in a checkpoint file, if any.
pub async fn run(
    bus: Bus,
    mut subscription: Subscription,
    topics: TopicsConfig,
    engine: Arc<Engine>,
    checkpointing: Option<Checkpointing>,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    if let Some(checkpointing) = &checkpointing {
        checkpointing.restore(&engine)?;
    }
    let mut acks = Acks { checkpointing, held: Vec::new(), last_saved: Instant::now() };
    let node_codec = Codec::<NodeEvent>::new()?;
    let audit_codec = Codec::<AuditEvent>::new()?;
    let cloud_codec = Codec::<CloudActivity>::new()?;
    let detection_codec = Codec::<Detection>::new()?;
    ComponentStarted { component: STAGE }.emit();
    // Inputs whose detections are being sent; they complete, and are acknowledged, in arrival order.
    let mut in_flight: FuturesOrdered<Sending> = FuturesOrdered::new();
    let mut learning_report = tokio::time::interval(LEARNING_REPORT_EVERY);
    learning_report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // False once an input could not be settled (its detections or its dead letter not sent, at shutdown): nothing
    // after it may be acknowledged or checkpointed, or its offset would be committed past it.
    let mut all_sent = true;
    'stage: loop {
        // The checkpoint must hold only inputs whose detections were delivered: drain the sends first.
        if acks.due_in() == Some(Duration::ZERO) {
            while let Some((sent, delivery)) = in_flight.next().await {
                if !sent {
                    all_sent = false;
                    break 'stage;
                }
                acks.settle(delivery)?;
            }
            acks.flush(&engine)?;
        }
        let wait = acks.due_in();
        tokio::select! {
            Some((sent, delivery)) = in_flight.next(), if !in_flight.is_empty() => {
                if !sent {
                    all_sent = false;
                    break;
                }
                acks.settle(delivery)?;
            }
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            _ = learning_report.tick() => report_learning(&engine),
            next = next_delivery(&mut subscription, &shutdown), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(delivery) = next else { break };
                let message = &delivery.message;
                // This input's span: its trace goes on with the detections it raises.
                let record = RecordSpan::start(STAGE, &message.headers);
                let detected_at = now_ms();
                let decoded = if message.topic == topics.node_events {
                    node_codec.decode(&message.payload).map(|e| engine.process(&Event::Node(&e), detected_at))
                } else if message.topic == topics.audit_events {
                    audit_codec.decode(&message.payload).map(|e| engine.process(&Event::Audit(&e), detected_at))
                } else {
                    cloud_codec.decode(&message.payload).map(|e| engine.process(&Event::Cloud(&e), detected_at))
                };
                let detections = match decoded {
                    Ok(detections) => detections,
                    Err(error) => {
                        let reason = error.to_string();
                        if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, &delivery, &reason, &shutdown).await {
                            all_sent = false;
                            break;
                        }
                        in_flight.push_back(Box::pin(std::future::ready((true, delivery))));
                        continue;
                    }
                };
                if let Some(detection) = detections.first() {
                    record.alert_type(&detection.alert_type);
                }
                let mut payloads = Vec::with_capacity(detections.len());
                for detection in &detections {
                    payloads.push((detection.id.clone(), detection_codec.encode(detection)?));
                }
                in_flight.push_back(Box::pin(send_detections(
                    bus.clone(),
                    (topics.detections.clone(), topics.dead_letter.clone()),
                    payloads,
                    (delivery, record),
                    shutdown.clone(),
                )));
            }
        }
    }
    while all_sent && let Some((sent, delivery)) = in_flight.next().await {
        if !sent {
            all_sent = false;
            break;
        }
        acks.settle(delivery)?;
    }
    if all_sent {
        acks.flush(&engine)?;
    } else {
        // The windows hold what an input whose detections were not sent did to them: saving them would make its
        // redelivery count twice, or find its window already closed. The last checkpoint and the redelivery of
        // every input not acknowledged rebuild them.
        tracing::warn!(held = acks.held.len(), "detections not all sent at shutdown; checkpoint not saved");
    }
    report_learning(&engine);
    subscription.close()?;
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpointing(dir: &std::path::Path) -> Checkpointing {
        let config = DetectConfig { state_path: Some(dir.join("state.json")), ..DetectConfig::default() };
        Checkpointing::from_config(&config).unwrap()
    }

    #[test]
    fn a_saved_checkpoint_restores_and_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let checkpointing = checkpointing(dir.path());
        let engine = Engine::new(&DetectConfig::default()).unwrap();
        checkpointing.save(&engine).unwrap();
        assert!(!checkpointing.path.with_extension("partial").exists());
        assert_eq!(checkpointing.restore(&engine).unwrap(), None);
    }

    #[test]
    fn an_unreadable_checkpoint_is_moved_aside_and_detect_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let checkpointing = checkpointing(dir.path());
        let engine = Engine::new(&DetectConfig::default()).unwrap();
        for damaged in [
            &b"{\"watermark_ms\": 12, \"K8S.NODE_Rec"[..],
            b"\xff\xfe",
            b"{\"K8S.NODE_ReconnaissanceArtifactsBurst\": 5}",
        ] {
            std::fs::write(&checkpointing.path, damaged).unwrap();
            let aside = checkpointing.restore(&engine).unwrap().expect("moved aside");
            assert_eq!(std::fs::read(&aside).unwrap(), damaged, "kept for a look");
            assert!(!checkpointing.path.exists());
            // The next checkpoint is written where the damaged one was.
            checkpointing.save(&engine).unwrap();
            assert_eq!(checkpointing.restore(&engine).unwrap(), None);
        }
    }
}
