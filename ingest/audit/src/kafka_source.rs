//! Audit events read from Kafka topics, for clusters whose API server flags cannot be set (AKS, EKS, GKE): the
//! provider's export lands on a topic (Event Hubs' Kafka endpoint for AKS, a Log Router export for GKE) and each
//! message's events are mapped and published to `palisade.audit.events`. The position is the source consumer
//! group's committed offset: a message is acknowledged only once every event in it is published or dead-lettered,
//! so a restart resumes after the last message handled whole. A message or a part of one that cannot be read goes
//! to the dead-letter topic with the reason; parts meant for something else are counted and passed over.

use std::time::Duration;

use palisade_runtime::{Bus, BusError, KafkaConfig, Message, Shutdown, Subscription};
use palisade_schemas::Codec;
use palisade_telemetry::{MessageProcessed, RecordsSkipped};
use serde::Deserialize;

use palisade_schemas::managed_audit::{self as managed, Envelope};

use crate::forward::Forwarder;

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
    subscription: Subscription,
    cluster: String,
    forwarder: Forwarder,
}

/// How long to wait before trying a refused publish again.
const RETRY: Duration = Duration::from_millis(500);
/// How long a source's brokers may take to answer at connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before connecting a failed source again.
const RECONNECT: Duration = Duration::from_secs(30);

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
            forwarder: Forwarder {
                name: config.name.clone(),
                stage: config.stage(),
                audit_topic: audit_topic.to_owned(),
                dead_letter_topic: dead_letter_topic.to_owned(),
                codec: Codec::new()?,
            },
            config: config.clone(),
            subscription,
            cluster: cluster.to_owned(),
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
        palisade_telemetry::ComponentWaiting { component: &config.stage() }.emit();
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
        palisade_telemetry::ComponentStarted { component: &self.forwarder.stage }.emit();
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
            if !self.handle(&bus, &delivery.message, &shutdown).await {
                break; // shut down with this message unfinished: it is read again after the restart
            }
            MessageProcessed { stage: &self.forwarder.stage }.emit();
            if let Err(error) = delivery.ack() {
                tracing::warn!(source = %self.config.name, %error, "cannot store the source offset");
            }
        }
        palisade_telemetry::ComponentStopped { component: &self.forwarder.stage }.emit();
        self.subscription.close().map_err(|source| SourceError::Bus { name: self.config.name.clone(), source })
    }

    /// Publishes or dead-letters everything in one message; false when shutdown came first.
    async fn handle(&self, bus: &Bus, message: &Message, shutdown: &Shutdown) -> bool {
        let contents = match managed::unwrap(self.config.envelope, &message.payload) {
            Ok(contents) => contents,
            Err(reason) => return self.forwarder.dead_letter(bus, message, &reason, shutdown).await,
        };
        if contents.skipped > 0 {
            let reason = match self.config.envelope {
                Envelope::Aks => "other category",
                Envelope::Gke => "other service",
                Envelope::Audit => "other kind",
            };
            RecordsSkipped { stage: &self.forwarder.stage, reason, count: contents.skipped as u64 }.emit();
        }
        self.forwarder.forward(bus, contents, message, self.config.cluster.as_deref(), &self.cluster, shutdown).await
    }
}
