//! One module per stage, plus the loop helpers they share.

pub mod cluster_state;
pub mod collect;
pub mod detect;
pub mod detect_changelog;
pub mod enrich;
pub mod sink;

use std::time::Duration;

use palisade_runtime::bus::Outgoing;
use palisade_runtime::{Bus, BusError, Delivery, Message, Shutdown, Subscription};

/// How long a stopping stage waits for more input before it considers its queue drained.
const DRAIN_IDLE: Duration = Duration::from_millis(300);
/// Pause after a failed publish before the next attempt.
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// The next delivery; after shutdown, only what is already queued (the stage drains, then stops).
pub(crate) async fn next_delivery(subscription: &mut Subscription, shutdown: &Shutdown) -> Option<Delivery> {
    loop {
        let result = if shutdown.is_triggered() {
            tokio::time::timeout(DRAIN_IDLE, subscription.next()).await.ok().flatten()
        } else {
            tokio::select! {
                next = subscription.next() => next,
                _ = shutdown.wait() => continue,
            }
        };
        match result {
            None => return None,
            Some(Ok(delivery)) => return Some(delivery),
            Some(Err(error)) => {
                tracing::warn!(%error, "receive failed; retrying");
                tokio::time::sleep(PUBLISH_RETRY).await;
                if shutdown.is_triggered() {
                    return None;
                }
            }
        }
    }
}

/// Where a stage's refused records go: its dead-letter topic, under its name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadLetters<'a> {
    pub topic: &'a str,
    pub stage: &'a str,
}

/// Publishes until the bus acknowledges. A record over the bus's size bound is never retried: a truncated copy
/// goes to the dead-letter topic with the reason and the record counts as handled, so it cannot hold up the ones
/// behind it. Returns false only if shutdown came first; the input is then left unacknowledged and will be
/// delivered again.
pub(crate) async fn publish_until_acked(
    bus: &Bus,
    outgoing: Outgoing<'_>,
    dead_letters: DeadLetters<'_>,
    shutdown: &Shutdown,
) -> bool {
    let mut attempts = 0u32;
    loop {
        match bus.publish(outgoing).await {
            Ok(()) => {
                if attempts > 0 {
                    palisade_telemetry::health::succeeded(dead_letters.stage);
                }
                return true;
            }
            Err(error @ BusError::TooLarge { .. }) => {
                let refused = Message {
                    topic: outgoing.topic.to_owned(),
                    partition: -1,
                    offset: -1,
                    key: outgoing.key.map(<[u8]>::to_vec),
                    payload: outgoing.payload.to_vec(),
                    headers: outgoing.headers.iter().map(|(n, v)| ((*n).to_owned(), v.to_vec())).collect(),
                    timestamp_ms: Some(now_ms()),
                };
                let delivery = Delivery::unacknowledged(refused);
                let reason = error.to_string();
                return dead_letter_until_acked(
                    bus,
                    dead_letters.topic,
                    dead_letters.stage,
                    &delivery,
                    &reason,
                    shutdown,
                )
                .await;
            }
            Err(error) => {
                attempts += 1;
                palisade_telemetry::health::failing(
                    dead_letters.stage,
                    &format!("publish to {} failed: {error}", outgoing.topic),
                );
                tracing::warn!(%error, topic = outgoing.topic, attempts, "publish failed; retrying");
                if shutdown.is_triggered() && attempts > 3 {
                    return false;
                }
                tokio::time::sleep(PUBLISH_RETRY).await;
            }
        }
    }
}

/// Dead-letters until acknowledged (see `publish_until_acked`).
pub(crate) async fn dead_letter_until_acked(
    bus: &Bus,
    topic: &str,
    stage: &str,
    delivery: &Delivery,
    reason: &str,
    shutdown: &Shutdown,
) -> bool {
    let mut attempts = 0u32;
    loop {
        match bus.dead_letter(topic, stage, &delivery.message, reason).await {
            Ok(()) => {
                if attempts > 0 {
                    palisade_telemetry::health::succeeded(stage);
                }
                return true;
            }
            Err(error) => {
                attempts += 1;
                palisade_telemetry::health::failing(stage, &format!("dead-letter publish failed: {error}"));
                tracing::warn!(%error, attempts, "dead-letter publish failed; retrying");
                if shutdown.is_triggered() && attempts > 3 {
                    return false;
                }
                tokio::time::sleep(PUBLISH_RETRY).await;
            }
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}
