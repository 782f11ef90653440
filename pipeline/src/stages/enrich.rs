//! The enrich stage: detections in, alerts out.

use std::sync::Arc;

use palisade_enrich::Enricher;
use palisade_runtime::bus::Outgoing;
use palisade_runtime::telemetry::{ComponentStarted, ComponentStopped, MessageProcessed, RecordProduced};
use palisade_runtime::{Bus, Shutdown, Subscription, TopicsConfig};
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
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let detection_codec = Codec::<Detection>::new()?;
    let alert_codec = Codec::<Alert>::new()?;
    ComponentStarted { component: STAGE }.emit();
    while let Some(delivery) = next_delivery(&mut subscription, &shutdown).await {
        let detection = match detection_codec.decode(&delivery.message.payload) {
            Ok(detection) => detection,
            Err(error) => {
                let reason = error.to_string();
                if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, &delivery, &reason, &shutdown).await {
                    break;
                }
                delivery.ack()?;
                continue;
            }
        };
        let alert = enricher.enrich(detection);
        let payload = alert_codec.encode(&alert)?;
        let outgoing =
            Outgoing { topic: &topics.enriched, key: Some(alert.id.as_bytes()), payload: &payload, headers: &[] };
        if !publish_until_acked(&bus, outgoing, &shutdown).await {
            break;
        }
        RecordProduced { stage: STAGE, record: "Alert" }.emit();
        MessageProcessed { stage: STAGE }.emit();
        delivery.ack()?;
    }
    subscription.close()?;
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}
