//! The enrich stage: detections in, alerts out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use tokio::sync::oneshot;

use palisade_enrich::Enricher;
use palisade_enrich::dedup::Deduplicator;
use palisade_enrich::kubernetes::{ClusterView, lacks_context};
use palisade_runtime::bus::Outgoing;
use palisade_runtime::trace::RecordSpan;
use palisade_runtime::{Bus, Delivery, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{Alert, Codec, Detection};
use palisade_telemetry::{
    AlertSuppressed, ComponentStarted, ComponentStopped, ContextLookup, ContextWaiting, MessageProcessed,
    RecordProduced,
};

use super::{DeadLetters, dead_letter_until_acked, next_delivery, now_ms, publish_until_acked};
use crate::{PalisadeConfig, PipelineError};

const STAGE: &str = "enrich";
/// Sends queued at once, in order (rdkafka batches them). Completed ones stay queued behind an alert that waits
/// for its pod context, so this also bounds the alerts that pass while one waits: 8192, about 8 s at 1k/s.
const MAX_IN_FLIGHT: usize = 8192;
/// How often waiting alerts look for their pod again.
const RECHECK: Duration = Duration::from_millis(50);

/// One alert being sent (or none), with the deliveries it settles once it and every earlier send completed.
type Sending = Pin<Box<dyn Future<Output = (bool, Vec<Delivery>)> + Send>>;

pub fn subscribe(bus: &Bus, topics: &TopicsConfig) -> Result<Subscription, PipelineError> {
    Ok(bus.subscribe(&[&topics.detections], STAGE)?)
}

/// How the stage folds and completes alerts.
pub struct EnrichSettings {
    /// Deduplication window and flush period, in seconds (`enrich.dedup_window_secs`, `dedup_flush_secs`).
    pub dedup_window_secs: u64,
    pub dedup_flush_secs: u64,
    /// Pod lookups, when `enrich.kubernetes` is set.
    pub lookup: Option<PodLookup>,
}

/// Pod lookups for container alerts that arrive without their pod context.
pub struct PodLookup {
    pub view: Arc<ClusterView>,
    /// Longest wait for the pod to appear; 0: look up once, never wait.
    pub wait: Duration,
    pub max_waiting: usize,
}

/// Starts the list/watch of the API server when `enrich.kubernetes` is set (its addresses and credential files are
/// checked first, so a bad one fails the start-up): its objects go to the cluster-state topic, its pods also to
/// this stage's lookups. Stops when the returned watch is dropped.
pub async fn start_pod_lookup(
    bus: &Bus,
    config: &PalisadeConfig,
    shutdown: &Shutdown,
) -> Result<Option<(PodLookup, super::cluster_state::StateWatch)>, PipelineError> {
    let Some(kubernetes) = &config.enrich.kubernetes else { return Ok(None) };
    let view = Arc::new(ClusterView::new());
    let watch = super::cluster_state::start_watch(
        bus,
        config.kafka.as_ref(),
        (&config.topics, &config.cluster),
        kubernetes,
        Arc::clone(&view),
        shutdown.clone(),
    )
    .await?;
    let lookup = PodLookup { view, wait: kubernetes.context_wait(), max_waiting: kubernetes.max_waiting };
    Ok(Some((lookup, watch)))
}

/// An alert waiting for its pod context. Its place in the ordered sends is taken when it arrives (so the
/// deliveries after it are acknowledged only after it), and `release` hands that place its send.
struct Waiting {
    deadline: tokio::time::Instant,
    detection: Detection,
    record: RecordSpan,
    settles: Vec<Delivery>,
    release: oneshot::Sender<Sending>,
}

/// The alert to send for a detection, if any: catalogue words and verdicts added, and none when a detect
/// exception (on context enrich found) or a suppression rule holds it back or when dedup folds it.
fn prepare(enricher: &Enricher, dedup: &mut Deduplicator, detection: Detection, completed: bool) -> Option<Alert> {
    if completed && let Some(reason) = enricher.excepted_by(&detection) {
        AlertSuppressed { alert_type: &detection.alert_type, suppression: "detect exception" }.emit();
        tracing::debug!(alert_type = detection.alert_type, reason, "excepted once its pod was known");
        return None;
    }
    let alert = enricher.enrich(detection);
    match enricher.suppressed_by(&alert, now_ms()) {
        Some(rule) => {
            AlertSuppressed { alert_type: &alert.alert_type, suppression: &rule }.emit();
            None
        }
        None => dedup.observe(alert),
    }
}

/// Takes from the waiting room each alert whose pod is now known, or whose wait is over (all of them when
/// `all`), with whether its context was completed.
fn due(waiting: &mut Vec<Waiting>, view: &ClusterView, all: bool) -> Vec<(Waiting, bool)> {
    let now = tokio::time::Instant::now();
    let mut out = Vec::new();
    let mut index = 0;
    while index < waiting.len() {
        let entry = &mut waiting[index];
        let found = view.fill(&mut entry.detection);
        let complete = found && !lacks_context(&entry.detection);
        if complete || all || entry.deadline <= now {
            ContextLookup { outcome: if complete { "waited" } else { "unknown" } }.emit();
            out.push((waiting.swap_remove(index), found));
        } else {
            index += 1;
        }
    }
    if !out.is_empty() {
        ContextWaiting { waiting: waiting.len() }.emit();
    }
    out
}

pub async fn run(
    bus: Bus,
    mut subscription: Subscription,
    topics: TopicsConfig,
    enricher: Arc<Enricher>,
    settings: EnrichSettings,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let EnrichSettings { dedup_window_secs, dedup_flush_secs, lookup } = settings;
    let detection_codec = Codec::<Detection>::new()?;
    let alert_codec = Codec::<Alert>::new()?;
    let mut dedup = Deduplicator::new(dedup_window_secs);
    // Deliveries whose alert was folded into a group are acknowledged only once the group's update is sent, and
    // all in arrival order (a Kafka offset commits everything before it): every send carries the deliveries it
    // settles, and sends complete in the order they were started.
    let mut held: Vec<Delivery> = Vec::new();
    let mut in_flight: FuturesOrdered<Sending> = FuturesOrdered::new();
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut flush = tokio::time::interval(Duration::from_secs(dedup_flush_secs.max(1)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ComponentStarted { component: STAGE }.emit();
    // `record`: the span of the detection the alert comes from (none for a group's update at a flush).
    let send = |alert: Option<Alert>, settles: Vec<Delivery>, record: RecordSpan| -> Result<Sending, PipelineError> {
        let Some(alert) = alert else { return Ok(Box::pin(std::future::ready((true, settles)))) };
        let payload = alert_codec.encode(&alert)?;
        let (bus, topic, shutdown) = (bus.clone(), topics.enriched.clone(), shutdown.clone());
        let dead_letter_topic = topics.dead_letter.clone();
        Ok(Box::pin(async move {
            let headers: Vec<_> = record.header().into_iter().collect();
            let outgoing =
                Outgoing { topic: &topic, key: Some(alert.id.as_bytes()), payload: &payload, headers: &headers };
            let dead_letters = DeadLetters { topic: &dead_letter_topic, stage: STAGE };
            let sent = publish_until_acked(&bus, outgoing, dead_letters, &shutdown).await;
            if sent {
                RecordProduced { stage: STAGE, record: "Alert" }.emit();
            }
            (sent, settles)
        }))
    };
    loop {
        tokio::select! {
            Some((sent, settles)) = in_flight.next(), if !in_flight.is_empty() => {
                if !sent {
                    break;
                }
                for delivery in settles {
                    delivery.ack()?;
                }
            }
            _ = flush.tick(), if dedup.enabled() => {
                for update in dedup.flush() {
                    in_flight.push_back(send(Some(update), Vec::new(), RecordSpan::none())?);
                }
                in_flight.push_back(send(None, std::mem::take(&mut held), RecordSpan::none())?);
            }
            _ = recheck.tick(), if !waiting.is_empty() => {
                let Some(lookup) = &lookup else { continue };
                for (entry, found) in due(&mut waiting, &lookup.view, false) {
                    let alert = prepare(&enricher, &mut dedup, entry.detection, found);
                    // The receiver is gone only if the stage is stopping; the delivery then stays unacknowledged.
                    let _ = entry.release.send(send(alert, entry.settles, entry.record)?);
                }
            }
            next = next_delivery(&mut subscription, &shutdown), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(delivery) = next else { break };
                let mut detection = match detection_codec.decode(&delivery.message.payload) {
                    Ok(detection) => detection,
                    Err(error) => {
                        let reason = error.to_string();
                        if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, &delivery, &reason, &shutdown).await {
                            break;
                        }
                        if dedup.enabled() {
                            held.push(delivery);
                        } else {
                            in_flight.push_back(send(None, vec![delivery], RecordSpan::none())?);
                        }
                        continue;
                    }
                };
                MessageProcessed { stage: STAGE }.emit();
                let record = RecordSpan::start(STAGE, &delivery.message.headers);
                record.alert_type(&detection.alert_type);
                let settles = if dedup.enabled() {
                    held.push(delivery);
                    Vec::new()
                } else {
                    vec![delivery]
                };
                let mut completed = false;
                if let Some(lookup) = &lookup && lacks_context(&detection) {
                    completed = lookup.view.fill(&mut detection);
                    if completed && !lacks_context(&detection) {
                        ContextLookup { outcome: "table" }.emit();
                    } else if !lookup.wait.is_zero() && lookup.view.synced() && waiting.len() < lookup.max_waiting {
                        let (release, released) = oneshot::channel::<Sending>();
                        in_flight.push_back(Box::pin(async move {
                            match released.await {
                                Ok(sending) => sending.await,
                                Err(_) => (false, Vec::new()),
                            }
                        }));
                        let deadline = tokio::time::Instant::now() + lookup.wait;
                        waiting.push(Waiting { deadline, detection, record, settles, release });
                        ContextWaiting { waiting: waiting.len() }.emit();
                        continue;
                    } else {
                        ContextLookup { outcome: "not_waited" }.emit();
                    }
                }
                let alert = prepare(&enricher, &mut dedup, detection, completed);
                // A suppressed or folded alert is not sent: its delivery is settled like a sent one's.
                if alert.is_some() || !settles.is_empty() {
                    in_flight.push_back(send(alert, settles, record)?);
                }
            }
        }
    }
    // Release what still waits (with what is known), send what was folded since the last flush, then acknowledge
    // what every completed send settles.
    if let Some(lookup) = &lookup {
        for (entry, found) in due(&mut waiting, &lookup.view, true) {
            let alert = prepare(&enricher, &mut dedup, entry.detection, found);
            let _ = entry.release.send(send(alert, entry.settles, entry.record)?);
        }
    }
    for update in dedup.flush() {
        in_flight.push_back(send(Some(update), Vec::new(), RecordSpan::none())?);
    }
    in_flight.push_back(send(None, std::mem::take(&mut held), RecordSpan::none())?);
    while let Some((sent, settles)) = in_flight.next().await {
        if !sent {
            break;
        }
        for delivery in settles {
            delivery.ack()?;
        }
    }
    subscription.close()?;
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}
