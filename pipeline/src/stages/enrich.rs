//! The enrich stage: detections in, alerts out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;

use palisade_enrich::Enricher;
use palisade_enrich::dedup::Deduplicator;
use palisade_runtime::bus::Outgoing;
use palisade_runtime::telemetry::{
    AlertSuppressed, ComponentStarted, ComponentStopped, MessageProcessed, RecordProduced,
};
use palisade_runtime::{Bus, Delivery, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{Alert, Codec, Detection};

use super::{dead_letter_until_acked, next_delivery, now_ms, publish_until_acked};
use crate::PipelineError;

const STAGE: &str = "enrich";
/// Alerts in flight to the bus at once (rdkafka batches the sends).
const MAX_IN_FLIGHT: usize = 1024;

/// One alert being sent (or none), with the deliveries it settles once it and every earlier send completed.
type Sending = Pin<Box<dyn Future<Output = (bool, Vec<Delivery>)> + Send>>;

pub fn subscribe(bus: &Bus, topics: &TopicsConfig) -> Result<Subscription, PipelineError> {
    Ok(bus.subscribe(&[&topics.detections], STAGE)?)
}

pub async fn run(
    bus: Bus,
    mut subscription: Subscription,
    topics: TopicsConfig,
    enricher: Arc<Enricher>,
    dedup_window_secs: u64,
    dedup_flush_secs: u64,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let detection_codec = Codec::<Detection>::new()?;
    let alert_codec = Codec::<Alert>::new()?;
    let mut dedup = Deduplicator::new(dedup_window_secs);
    // Deliveries whose alert was folded into a group are acknowledged only once the group's update is sent, and
    // all in arrival order (a Kafka offset commits everything before it): every send carries the deliveries it
    // settles, and sends complete in the order they were started.
    let mut held: Vec<Delivery> = Vec::new();
    let mut in_flight: FuturesOrdered<Sending> = FuturesOrdered::new();
    let mut flush = tokio::time::interval(Duration::from_secs(dedup_flush_secs.max(1)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ComponentStarted { component: STAGE }.emit();
    let send = |alert: Option<Alert>, settles: Vec<Delivery>| -> Result<Sending, PipelineError> {
        let Some(alert) = alert else { return Ok(Box::pin(std::future::ready((true, settles)))) };
        let payload = alert_codec.encode(&alert)?;
        let (bus, topic, shutdown) = (bus.clone(), topics.enriched.clone(), shutdown.clone());
        Ok(Box::pin(async move {
            let outgoing = Outgoing { topic: &topic, key: Some(alert.id.as_bytes()), payload: &payload, headers: &[] };
            let sent = publish_until_acked(&bus, outgoing, &shutdown).await;
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
                    in_flight.push_back(send(Some(update), Vec::new())?);
                }
                in_flight.push_back(send(None, std::mem::take(&mut held))?);
            }
            next = next_delivery(&mut subscription, &shutdown), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(delivery) = next else { break };
                let detection = match detection_codec.decode(&delivery.message.payload) {
                    Ok(detection) => detection,
                    Err(error) => {
                        let reason = error.to_string();
                        if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, &delivery, &reason, &shutdown).await {
                            break;
                        }
                        if dedup.enabled() {
                            held.push(delivery);
                        } else {
                            in_flight.push_back(send(None, vec![delivery])?);
                        }
                        continue;
                    }
                };
                MessageProcessed { stage: STAGE }.emit();
                let alert = enricher.enrich(detection);
                // A suppressed alert is not sent (nor folded): its delivery is settled like a sent one's.
                let alert = match enricher.suppressed_by(&alert, now_ms()) {
                    Some(rule) => {
                        AlertSuppressed { alert_type: &alert.alert_type, suppression: &rule }.emit();
                        None
                    }
                    None => dedup.observe(alert),
                };
                if dedup.enabled() {
                    if alert.is_some() {
                        in_flight.push_back(send(alert, Vec::new())?);
                    }
                    held.push(delivery);
                } else {
                    in_flight.push_back(send(alert, vec![delivery])?);
                }
            }
        }
    }
    // Send what was folded since the last flush, then acknowledge what every completed send settles.
    for update in dedup.flush() {
        in_flight.push_back(send(Some(update), Vec::new())?);
    }
    in_flight.push_back(send(None, std::mem::take(&mut held))?);
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
