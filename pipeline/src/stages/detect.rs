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
use palisade_runtime::telemetry::{
    BaselineLearning, CheckpointWritten, ComponentStarted, ComponentStopped, MessageProcessed, RecordProduced,
};
use palisade_runtime::{Bus, Delivery, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{AuditEvent, CloudActivity, Codec, Detection, NodeEvent};

use super::{DeadLetters, dead_letter_until_acked, next_delivery, now_ms, publish_until_acked};
use crate::PipelineError;

const STAGE: &str = "detect";

pub fn subscribe(bus: &Bus, topics: &TopicsConfig) -> Result<Subscription, PipelineError> {
    Ok(bus.subscribe(&[&topics.node_events, &topics.audit_events, &topics.cloud_activity], STAGE)?)
}

/// Inputs whose detections may be in flight to the bus at once (rdkafka batches the sends).
const MAX_IN_FLIGHT: usize = 1024;

/// How often the baselines' learning state goes to `/metrics`.
const LEARNING_REPORT_EVERY: Duration = Duration::from_secs(5);

fn report_learning(engine: &Engine) {
    for (alert_type, state) in engine.learning_states() {
        BaselineLearning { alert_type, learning: state.learning, active: state.active }.emit();
    }
}

/// One input's detections being sent; resolves to whether they all were, with the input to acknowledge.
type Sending = Pin<Box<dyn Future<Output = (bool, Delivery)> + Send>>;

async fn send_detections(
    bus: Bus,
    (topic, dead_letter_topic): (String, String),
    payloads: Vec<(String, Vec<u8>)>,
    delivery: Delivery,
    shutdown: Shutdown,
) -> (bool, Delivery) {
    let dead_letters = DeadLetters { topic: &dead_letter_topic, stage: STAGE };
    for (key, payload) in &payloads {
        let outgoing = Outgoing { topic: &topic, key: Some(key.as_bytes()), payload, headers: &[] };
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
}

impl Checkpointing {
    pub fn from_config(config: &DetectConfig) -> Option<Self> {
        let path = config.state_path.clone()?;
        Some(Self { path, every: Duration::from_secs(config.checkpoint_secs.max(1)) })
    }

    fn error(&self, reason: impl ToString) -> PipelineError {
        PipelineError::Checkpoint { path: self.path.display().to_string(), reason: reason.to_string() }
    }

    /// Restores the state a previous run saved, if there is one.
    fn restore(&self, engine: &Engine) -> Result<(), PipelineError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(self.error(error)),
        };
        let state: serde_json::Value = serde_json::from_str(&text).map_err(|e| self.error(e))?;
        engine.restore_window_state(&state).map_err(|e| self.error(e))
    }

    /// Writes the state beside the file, then renames it over (a crash leaves the old or the new, never half).
    fn save(&self, engine: &Engine) -> Result<(), PipelineError> {
        let text = serde_json::to_vec(&engine.window_state()).map_err(|e| self.error(e))?;
        let partial = self.path.with_extension("partial");
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| self.error(e))?;
        }
        std::fs::write(&partial, text).map_err(|e| self.error(e))?;
        std::fs::rename(&partial, &self.path).map_err(|e| self.error(e))
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
    'stage: loop {
        // The checkpoint must hold only inputs whose detections were delivered: drain the sends first.
        if acks.due_in() == Some(Duration::ZERO) {
            while let Some((sent, delivery)) = in_flight.next().await {
                if !sent {
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
                    break;
                }
                acks.settle(delivery)?;
            }
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            _ = learning_report.tick() => report_learning(&engine),
            next = next_delivery(&mut subscription, &shutdown), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(delivery) = next else { break };
                let message = &delivery.message;
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
                            break;
                        }
                        in_flight.push_back(Box::pin(std::future::ready((true, delivery))));
                        continue;
                    }
                };
                let mut payloads = Vec::with_capacity(detections.len());
                for detection in &detections {
                    payloads.push((detection.id.clone(), detection_codec.encode(detection)?));
                }
                in_flight.push_back(Box::pin(send_detections(
                    bus.clone(),
                    (topics.detections.clone(), topics.dead_letter.clone()),
                    payloads,
                    delivery,
                    shutdown.clone(),
                )));
            }
        }
    }
    while let Some((sent, delivery)) = in_flight.next().await {
        if !sent {
            break;
        }
        acks.settle(delivery)?;
    }
    acks.flush(&engine)?;
    report_learning(&engine);
    subscription.close()?;
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}
