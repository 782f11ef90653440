//! Publishing what a pull source (a Kafka topic, a CloudWatch Logs group) unwrapped: each event mapped, encoded
//! and published to `palisade.audit.events`, each part that cannot be read dead-lettered with the reason; a
//! refused publish is tried again until it is taken or shutdown comes (never dropped).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use palisade_runtime::bus::{Header, Outgoing};
use palisade_runtime::trace::RecordSpan;
use palisade_runtime::{Bus, BusError, Message, Shutdown};
use palisade_schemas::managed_audit::Contents;
use palisade_schemas::{AuditEvent, Codec};
use palisade_telemetry::RecordProduced;

/// How long to wait before trying a refused publish again.
const RETRY: Duration = Duration::from_millis(500);
/// What of a message is kept when the dead-letter topic refuses it whole.
const DEAD_LETTER_HEAD_BYTES: usize = 64 * 1024;

/// Where one source's events and dead letters go, under its metrics name.
pub(crate) struct Forwarder {
    /// The source's name, in logs.
    pub name: String,
    /// Its metrics and health name.
    pub stage: String,
    pub audit_topic: String,
    pub dead_letter_topic: String,
    pub codec: Codec<AuditEvent>,
}

impl Forwarder {
    /// Publishes or dead-letters every event of `contents` (all at once: the bus batches them), each tried until it
    /// is taken; `message` is what they came in, for the dead-letter topic. The cluster an event carries is
    /// `cluster` if set, else the one its envelope names, else `fallback`. False when shutdown came first.
    pub async fn forward(
        &self,
        bus: &Bus,
        contents: Contents,
        message: &Message,
        cluster: Option<&str>,
        fallback: &str,
        shutdown: &Shutdown,
    ) -> bool {
        let handled = contents.events.into_iter().map(|part| async move {
            let mapped = part.map_err(|(reason, part)| (reason, part.to_string().into_bytes())).and_then(|unwrapped| {
                let cluster = cluster.or(unwrapped.cluster.as_deref()).unwrap_or(fallback);
                // A refused event goes to the dead-letter topic as the Event it was unwrapped to.
                let refused = |e: &dyn std::fmt::Display| (e.to_string(), unwrapped.event.to_string().into_bytes());
                let event = AuditEvent::from_k8s_json(&unwrapped.event, cluster).map_err(|e| refused(&e))?;
                let payload = self.codec.encode(&event).map_err(|e| refused(&e))?;
                Ok((event.partition_key(), payload))
            });
            match mapped {
                Ok((key, payload)) => {
                    // An event starts its trace here: a provider's trace header is not continued.
                    let record = RecordSpan::start_root("audit");
                    let headers: Vec<_> = record.header().into_iter().collect();
                    self.publish(bus, (&key, &payload, &headers), message, shutdown).await
                }
                Err((reason, part)) => {
                    let original = Message { payload: part, ..message.clone() };
                    self.dead_letter(bus, &original, &reason, shutdown).await
                }
            }
        });
        futures::future::join_all(handled).await.into_iter().all(|delivered| delivered)
    }

    /// Publishes one event, trying again while the bus refuses (never dropped); a record over the size bound is
    /// dead-lettered, being refused for good.
    async fn publish(
        &self,
        bus: &Bus,
        (key, payload, headers): (&str, &[u8], &[Header<'_>]),
        message: &Message,
        shutdown: &Shutdown,
    ) -> bool {
        loop {
            let outgoing = Outgoing { topic: &self.audit_topic, key: Some(key.as_bytes()), payload, headers };
            match bus.publish(outgoing).await {
                Ok(()) => {
                    palisade_telemetry::health::succeeded(&self.stage);
                    RecordProduced { stage: &self.stage, record: "AuditEvent" }.emit();
                    return true;
                }
                Err(error @ BusError::TooLarge { .. }) => {
                    return self.dead_letter(bus, message, &error.to_string(), shutdown).await;
                }
                Err(error) => {
                    palisade_telemetry::health::failing(&self.stage, &format!("the bus refuses audit events: {error}"));
                }
            }
            tokio::select! { _ = tokio::time::sleep(RETRY) => {}, _ = shutdown.wait() => return false }
        }
    }

    /// Dead-letters `message` with the reason, trying again while the bus is away; false when shutdown came first.
    pub async fn dead_letter(&self, bus: &Bus, message: &Message, reason: &str, shutdown: &Shutdown) -> bool {
        loop {
            match bus.dead_letter(&self.dead_letter_topic, &self.stage, message, reason).await {
                Ok(()) => return true,
                // Not even a cut copy fits (its headers alone are over the bound): counted and passed over, or
                // the source would stop on it for ever.
                Err(error @ BusError::TooLarge { .. }) => {
                    // The dead-letter topic may take less than the bound (its own max.message.bytes), or the
                    // source's headers alone fill it: its first 64 KiB without them, then nothing but a count.
                    let head = Message {
                        payload: message.payload[..message.payload.len().min(DEAD_LETTER_HEAD_BYTES)].to_vec(),
                        headers: Vec::new(),
                        ..message.clone()
                    };
                    let cut = format!("{reason} (cut to its first {} bytes: {error})", head.payload.len());
                    let smaller = head.payload.len() < message.payload.len() || !message.headers.is_empty();
                    let sent = if smaller {
                        Some(bus.dead_letter(&self.dead_letter_topic, &self.stage, &head, &cut).await)
                    } else {
                        None
                    };
                    match sent {
                        Some(Ok(())) => return true,
                        Some(Err(BusError::TooLarge { .. })) | None => {
                            tracing::error!(source = %self.name, %error, "a dead letter does not fit the bound");
                            let reason = "dead_letter_too_large";
                            palisade_telemetry::ItemDropped { component: &self.stage, reason, count: 1 }.emit();
                            return true;
                        }
                        // The bus is away: the whole is tried again after the pause.
                        Some(Err(_)) => {}
                    }
                }
                Err(error) => {
                    palisade_telemetry::health::failing(
                        &self.stage,
                        &format!("the dead-letter topic refuses: {error}"),
                    );
                }
            }
            tokio::select! { _ = tokio::time::sleep(RETRY) => {}, _ = shutdown.wait() => return false }
        }
    }
}

/// Replaces `path` with `contents`, flushed to disk before the rename: after a power loss the file holds the old
/// contents or the new, never a part.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(contents).and_then(|()| file.sync_all())?;
    std::fs::rename(&temporary, path)
}
