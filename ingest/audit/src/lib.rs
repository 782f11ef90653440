//! `palisade audit`: receives kube-apiserver audit batches on a TLS webhook, maps each event to an
//! `AuditEvent` and publishes it to `palisade.audit.events`, answering the API server only after the bus
//! acknowledged the whole batch.

pub mod cloudwatch_source;
mod forward;
pub mod kafka_source;
pub mod logfile;
pub mod webhook;

pub use webhook::{AuditConfig, AuditError, WebhookServer};

/// The audit sources of one process: the webhook, a tailer per configured log file, and the Kafka and CloudWatch
/// sources.
pub struct AuditSources {
    pub webhook: WebhookServer,
    tailers: Vec<tokio::task::JoinHandle<Result<(), logfile::TailError>>>,
    pulled: Vec<tokio::task::JoinHandle<()>>,
}

impl AuditSources {
    /// Starts the webhook, the tailers (audit logs, cloud activity files), the Kafka sources (each connecting
    /// and reconnecting on its own) and the CloudWatch sources; all stop when `shutdown` fires. `kafka` is the pipeline's
    /// connection, the default of the Kafka sources.
    pub async fn start(
        config: &AuditConfig,
        bus: &palisade_runtime::Bus,
        kafka: Option<&palisade_runtime::KafkaConfig>,
        cluster: &str,
        topics: &palisade_runtime::TopicsConfig,
        shutdown: &palisade_runtime::Shutdown,
    ) -> Result<Self, AuditError> {
        // Settings that cannot work stop the start (no network: files, variables, librdkafka's own checks).
        for source in &config.cloudwatch_sources {
            source.validate().map_err(|reason| AuditError::SourceSettings { name: source.name.clone(), reason })?;
        }
        for source in &config.kafka_sources {
            let connection = source.connection(kafka).ok_or_else(|| AuditError::SourceSettings {
                name: source.name.clone(),
                reason: "no [audit.kafka_sources.kafka] and no [kafka]".into(),
            })?;
            palisade_runtime::kafka::ClientSettings::resolve(connection)
                .map_err(|e| AuditError::SourceSettings { name: source.name.clone(), reason: e.to_string() })?;
        }
        let (audit_topic, dead_letter) = (&topics.audit_events, &topics.dead_letter);
        let webhook =
            WebhookServer::start(config, bus.clone(), audit_topic, dead_letter, cluster, shutdown.clone()).await?;
        let poll = std::time::Duration::from_millis(config.log_poll_interval_ms.max(1));
        let audit_files = config.log_paths.iter().map(|path| (path, audit_topic, logfile::LineFormat::Audit));
        let cloud_files =
            config.cloud_log_paths.iter().map(|path| (path, &topics.cloud_activity, logfile::LineFormat::Cloud));
        let tailers = audit_files
            .chain(cloud_files)
            .map(|(path, topic, format)| {
                let position_dir = &config.log_position_dir;
                let tailer = logfile::Tailer::new(path, position_dir, cluster, topic, dead_letter, poll, format);
                tokio::spawn(tailer.run(bus.clone(), shutdown.clone()))
            })
            .collect();
        // Started once the webhook runs (a webhook that fails leaves nothing behind). Each source connects on its
        // own task: one that cannot be reached is retried there and stops nothing else.
        let kafka_sources = config.kafka_sources.iter().map(|source| {
            tokio::spawn(kafka_source::KafkaSource::serve(
                source.clone(),
                kafka.cloned(),
                cluster.to_owned(),
                topics.clone(),
                bus.clone(),
                shutdown.clone(),
            ))
        });
        let cloudwatch_sources = config.cloudwatch_sources.iter().map(|source| {
            tokio::spawn(cloudwatch_source::CloudWatchSource::serve(
                source.clone(),
                config.log_position_dir.clone(),
                cluster.to_owned(),
                topics.clone(),
                bus.clone(),
                shutdown.clone(),
            ))
        });
        let pulled = kafka_sources.chain(cloudwatch_sources).collect();
        Ok(Self { webhook, tailers, pulled })
    }

    /// Waits until the webhook has answered its last batch and every tailer and source has saved its position.
    pub async fn finished(self) {
        self.webhook.task.await.ok();
        for tailer in self.tailers {
            if let Ok(Err(error)) = tailer.await {
                tracing::error!(%error, "audit log tailer stopped");
            }
        }
        for source in self.pulled {
            source.await.ok();
        }
    }
}
