//! The enrich stage: detections in, alerts out.

use std::sync::Arc;

use std::time::Duration;

use palisade_enrich::Enricher;
use palisade_enrich::dedup::Deduplicator;
use palisade_runtime::bus::Outgoing;
use palisade_runtime::telemetry::{ComponentStarted, ComponentStopped, MessageProcessed, RecordProduced};
use palisade_runtime::{Bus, Delivery, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{Alert, Codec, Detection};

use super::{dead_letter_until_acked, next_delivery, publish_until_acked};
use crate::PipelineError;

const STAGE: &str = "enrich";

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
    // all in arrival order (a Kafka offset commits everything before it).
    let mut held: Vec<Delivery> = Vec::new();
    let mut flush = tokio::time::interval(Duration::from_secs(dedup_flush_secs.max(1)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ComponentStarted { component: STAGE }.emit();
    let publish = |alert: Alert| {
        let bus = bus.clone();
        let topic = topics.enriched.clone();
        let shutdown = shutdown.clone();
        let payload = alert_codec.encode(&alert);
        async move {
            let payload = payload?;
            let outgoing = Outgoing { topic: &topic, key: Some(alert.id.as_bytes()), payload: &payload, headers: &[] };
            let sent = publish_until_acked(&bus, outgoing, &shutdown).await;
            if sent {
                RecordProduced { stage: STAGE, record: "Alert" }.emit();
            }
            Ok::<bool, PipelineError>(sent)
        }
    };
    'stage: loop {
        let delivery = tokio::select! {
            delivery = next_delivery(&mut subscription, &shutdown) => delivery,
            _ = flush.tick(), if dedup.enabled() => {
                for update in dedup.flush() {
                    if !publish(update).await? {
                        break 'stage;
                    }
                }
                for delivery in held.drain(..) {
                    delivery.ack()?;
                }
                continue;
            }
        };
        let Some(delivery) = delivery else { break };
        let detection = match detection_codec.decode(&delivery.message.payload) {
            Ok(detection) => detection,
            Err(error) => {
                let reason = error.to_string();
                if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, &delivery, &reason, &shutdown).await {
                    break;
                }
                held.push(delivery);
                continue;
            }
        };
        MessageProcessed { stage: STAGE }.emit();
        if let Some(alert) = dedup.observe(enricher.enrich(detection))
            && !publish(alert).await?
        {
            break;
        }
        if dedup.enabled() {
            held.push(delivery);
        } else {
            for earlier in held.drain(..) {
                earlier.ack()?;
            }
            delivery.ack()?;
        }
    }
    // Send what was folded since the last flush, then acknowledge.
    let mut sent_all = true;
    for update in dedup.flush() {
        if !publish(update).await? {
            sent_all = false;
            break;
        }
    }
    if sent_all {
        for delivery in held.drain(..) {
            delivery.ack()?;
        }
    }
    subscription.close()?;
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}
