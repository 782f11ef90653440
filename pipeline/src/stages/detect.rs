//! The detect stage: node, audit and cloud events in, detections out.

use std::sync::Arc;

use palisade_detect::{Engine, Event};
use palisade_runtime::bus::Outgoing;
use palisade_runtime::telemetry::{ComponentStarted, ComponentStopped, MessageProcessed, RecordProduced};
use palisade_runtime::{Bus, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{AuditEvent, CloudActivity, Codec, Detection, NodeEvent};

use super::{dead_letter_until_acked, next_delivery, now_ms, publish_until_acked};
use crate::PipelineError;

const STAGE: &str = "detect";

pub fn subscribe(bus: &Bus, topics: &TopicsConfig) -> Result<Subscription, PipelineError> {
    Ok(bus.subscribe(&[&topics.node_events, &topics.audit_events, &topics.cloud_activity], STAGE)?)
}

pub async fn run(
    bus: Bus,
    mut subscription: Subscription,
    topics: TopicsConfig,
    engine: Arc<Engine>,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let node_codec = Codec::<NodeEvent>::new()?;
    let audit_codec = Codec::<AuditEvent>::new()?;
    let cloud_codec = Codec::<CloudActivity>::new()?;
    let detection_codec = Codec::<Detection>::new()?;
    ComponentStarted { component: STAGE }.emit();
    while let Some(delivery) = next_delivery(&mut subscription, &shutdown).await {
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
                delivery.ack()?;
                continue;
            }
        };
        let mut delivered = true;
        for detection in &detections {
            let payload = detection_codec.encode(detection)?;
            let outgoing = Outgoing {
                topic: &topics.detections,
                key: Some(detection.id.as_bytes()),
                payload: &payload,
                headers: &[],
            };
            if !publish_until_acked(&bus, outgoing, &shutdown).await {
                delivered = false;
                break;
            }
            RecordProduced { stage: STAGE, record: "Detection" }.emit();
        }
        if !delivered {
            break;
        }
        MessageProcessed { stage: STAGE }.emit();
        delivery.ack()?;
    }
    subscription.close()?;
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}
