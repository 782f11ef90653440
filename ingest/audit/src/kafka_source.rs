//! Audit events read from Kafka topics, for clusters whose API server flags cannot be set (AKS, EKS, GKE): the
//! provider's export lands on a topic (Event Hubs' Kafka endpoint for AKS, a Log Router export for GKE) and each
//! message's events are mapped and published to `palisade.audit.events`. The position is the source consumer
//! group's committed offset: a message is acknowledged only once every event in it is published or dead-lettered,
//! so a restart resumes after the last message handled whole. A message or a part of one that cannot be read goes
//! to the dead-letter topic with the reason; parts meant for something else are counted and passed over.

use std::time::Duration;

use palisade_runtime::bus::Outgoing;
use palisade_runtime::{Bus, BusError, KafkaConfig, Message, Shutdown, Subscription};
use palisade_schemas::{AuditEvent, Codec};
use palisade_telemetry::{MessageProcessed, RecordProduced, RecordsSkipped};
use serde::Deserialize;

use palisade_schemas::managed_audit::{self as managed, Envelope};

/// `[[audit.kafka_sources]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Names the source in metrics and logs, and its consumer group (`<group_prefix>-audit-<name>`).
    pub name: String,
    /// What the messages hold: `aks` (Azure resource-log envelopes from Event Hubs), `gke` (Cloud Audit Logs
    /// entries), `audit` (plain audit.k8s.io Events or EventLists).
    pub envelope: Envelope,
    /// Topics to read (for Event Hubs: the hub names).
    pub topics: Vec<String>,
    /// The source's own connection (Event Hubs: `<namespace>.servicebus.windows.net:9093`, SASL PLAIN over TLS,
    /// user `$ConnectionString`); absent: the pipeline's `[kafka]`.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// The cluster name its events carry; absent: the one the envelope names (AKS resource ID, GKE label), else
    /// the configured `cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
}

impl KafkaSourceConfig {
    pub fn validate(&self) -> Result<(), String> {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.name.is_empty() || !self.name.chars().all(valid) {
            return Err(format!("name `{}` must be letters, digits, `-` or `_`", self.name));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(format!("source `{}` needs at least one topic, none empty", self.name));
        }
        if let Some(kafka) = &self.kafka {
            kafka.validate().map_err(|e| format!("source `{}`: {e}", self.name))?;
            if let Some(sasl) = &kafka.sasl
                && sasl.password_file.is_none()
                && sasl.password_env.is_none()
            {
                return Err(format!(
                    "source `{}`: its sasl needs password_file or password_env (PALISADE_KAFKA_SASL_PASSWORD is \
                     [kafka]'s password and is never sent to another cluster)",
                    self.name
                ));
            }
        }
        Ok(())
    }

    /// The connection this source reads with: its own, else the pipeline's `[kafka]`.
    pub fn connection<'a>(&'a self, main: Option<&'a KafkaConfig>) -> Option<&'a KafkaConfig> {
        self.kafka.as_ref().or(main)
    }

    /// The metrics and health name of this source.
    pub fn stage(&self) -> String {
        format!("audit-kafka-{}", self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("audit source `{name}` needs a Kafka connection: give it [audit.kafka_sources.kafka] or configure [kafka]")]
    NoConnection { name: String },
    #[error("audit source `{name}`: {source}")]
    Bus {
        name: String,
        #[source]
        source: BusError,
    },
    #[error(transparent)]
    Codec(#[from] palisade_schemas::CodecError),
}

/// A running source: its subscription on its own connection, and where it publishes.
pub struct KafkaSource {
    config: KafkaSourceConfig,
    stage: String,
    subscription: Subscription,
    cluster: String,
    audit_topic: String,
    dead_letter_topic: String,
}

/// How long to wait before trying a refused publish again.
const RETRY: Duration = Duration::from_millis(500);
/// How long a source's brokers may take to answer at connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before connecting a failed source again.
const RECONNECT: Duration = Duration::from_secs(30);
/// What of a message is kept when the dead-letter topic refuses it whole.
const DEAD_LETTER_HEAD_BYTES: usize = 64 * 1024;

impl KafkaSource {
    /// Connects (checking the connection as the stages do) and subscribes, with a consumer only: the source's
    /// credential may allow nothing but reading. `main` is the pipeline's `[kafka]`.
    pub async fn connect(
        config: &KafkaSourceConfig,
        main: Option<&KafkaConfig>,
        cluster: &str,
        audit_topic: &str,
        dead_letter_topic: &str,
        shutdown: &Shutdown,
    ) -> Result<Self, SourceError> {
        let connection =
            config.connection(main).cloned().ok_or_else(|| SourceError::NoConnection { name: config.name.clone() })?;
        let topics = config.topics.clone();
        let group = format!("audit-{}", config.name);
        let stop = shutdown.clone();
        let subscription = tokio::task::spawn_blocking(move || {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            Subscription::kafka_source(&connection, &topics, &group, CONNECT_TIMEOUT, &stop)
        })
        .await
        .expect("the connection check does not panic")
        .map_err(|source| SourceError::Bus { name: config.name.clone(), source })?;
        tracing::info!(source = %config.name, envelope = ?config.envelope, topics = ?config.topics, "audit source subscribed");
        Ok(Self {
            stage: config.stage(),
            config: config.clone(),
            subscription,
            cluster: cluster.to_owned(),
            audit_topic: audit_topic.to_owned(),
            dead_letter_topic: dead_letter_topic.to_owned(),
        })
    }

    /// Connects and reads until shutdown, connecting again after a failure: a source that cannot be reached or
    /// refuses the credentials is logged (its `palisade_component_up` stays 0) and tried again every `RECONNECT`,
    /// and never stops the webhook or the other sources.
    pub async fn serve(
        config: KafkaSourceConfig,
        main: Option<KafkaConfig>,
        cluster: String,
        topics: palisade_runtime::TopicsConfig,
        bus: Bus,
        shutdown: Shutdown,
    ) {
        loop {
            let connected = tokio::select! {
                connected = Self::connect(
                    &config,
                    main.as_ref(),
                    &cluster,
                    &topics.audit_events,
                    &topics.dead_letter,
                    &shutdown,
                ) => connected,
                _ = shutdown.wait() => return,
            };
            match connected {
                Ok(source) => match source.run(bus.clone(), shutdown.clone()).await {
                    Ok(()) => return,
                    Err(error) => tracing::error!(%error, "audit Kafka source stopped; connecting again"),
                },
                // Settings that cannot work will not work later either (checked at start; a file may go since).
                Err(error @ SourceError::Bus { source: BusError::Settings(_), .. }) => {
                    tracing::error!(%error, "audit Kafka source cannot run with these settings; it stays stopped");
                    return;
                }
                // Not reported to /healthz: a liveness failure would restart the webhook and the other sources
                // with it. `palisade_component_up` stays 0 for this source until it runs.
                Err(error) => tracing::error!(%error, "audit Kafka source cannot start; trying again"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// Reads until shutdown; `bus` is where events and dead letters go.
    pub async fn run(mut self, bus: Bus, shutdown: Shutdown) -> Result<(), SourceError> {
        let codec = Codec::<AuditEvent>::new()?;
        palisade_telemetry::ComponentStarted { component: &self.stage }.emit();
        let mut warned: Option<std::time::Instant> = None;
        loop {
            let next = tokio::select! {
                next = self.subscription.next() => next,
                _ = shutdown.wait() => break,
            };
            let delivery = match next {
                None => break,
                // The source's brokers away: logged (every 30 s at most), not reported to /healthz, whose failure
                // would restart the webhook with it; librdkafka reconnects.
                Some(Err(error)) => {
                    if warned.is_none_or(|at| at.elapsed() >= RECONNECT) {
                        tracing::warn!(source = %self.config.name, %error, "reading the audit source failed");
                        warned = Some(std::time::Instant::now());
                    }
                    tokio::select! { _ = tokio::time::sleep(RETRY) => continue, _ = shutdown.wait() => break }
                }
                Some(Ok(delivery)) => delivery,
            };
            if !self.handle(&bus, &codec, &delivery.message, &shutdown).await {
                break; // shut down with this message unfinished: it is read again after the restart
            }
            MessageProcessed { stage: &self.stage }.emit();
            if let Err(error) = delivery.ack() {
                tracing::warn!(source = %self.config.name, %error, "cannot store the source offset");
            }
        }
        palisade_telemetry::ComponentStopped { component: &self.stage }.emit();
        self.subscription.close().map_err(|source| SourceError::Bus { name: self.config.name.clone(), source })
    }

    /// Publishes or dead-letters everything in one message; false when shutdown came first.
    async fn handle(&self, bus: &Bus, codec: &Codec<AuditEvent>, message: &Message, shutdown: &Shutdown) -> bool {
        let contents = match managed::unwrap(self.config.envelope, &message.payload) {
            Ok(contents) => contents,
            Err(reason) => return self.dead_letter(bus, message, &reason, shutdown).await,
        };
        if contents.skipped > 0 {
            let reason = match self.config.envelope {
                Envelope::Aks => "other category",
                Envelope::Gke => "other service",
                Envelope::Audit => "other kind",
            };
            RecordsSkipped { stage: &self.stage, reason, count: contents.skipped as u64 }.emit();
        }
        // Every event of the message at once (the bus batches them), each tried until it is taken.
        let handled = contents.events.into_iter().map(|part| async move {
            let mapped = part.map_err(|(reason, part)| (reason, part.to_string().into_bytes())).and_then(|unwrapped| {
                let cluster = self.config.cluster.as_deref().or(unwrapped.cluster.as_deref()).unwrap_or(&self.cluster);
                // A refused event goes to the dead-letter topic as the Event it was unwrapped to.
                let refused = |e: &dyn std::fmt::Display| (e.to_string(), unwrapped.event.to_string().into_bytes());
                let event = AuditEvent::from_k8s_json(&unwrapped.event, cluster).map_err(|e| refused(&e))?;
                let payload = codec.encode(&event).map_err(|e| refused(&e))?;
                Ok((event.partition_key(), payload))
            });
            match mapped {
                Ok((key, payload)) => self.publish(bus, &key, &payload, message, shutdown).await,
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
    async fn publish(&self, bus: &Bus, key: &str, payload: &[u8], message: &Message, shutdown: &Shutdown) -> bool {
        loop {
            let outgoing = Outgoing { topic: &self.audit_topic, key: Some(key.as_bytes()), payload, headers: &[] };
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

    async fn dead_letter(&self, bus: &Bus, message: &Message, reason: &str, shutdown: &Shutdown) -> bool {
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
                            tracing::error!(source = %self.config.name, %error, "a dead letter does not fit the bound");
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
