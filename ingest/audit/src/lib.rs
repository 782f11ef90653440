//! `palisade audit`: receives kube-apiserver audit batches on a TLS webhook, maps each event to an
//! `AuditEvent` and publishes it to `palisade.audit.events`, answering the API server only after the bus
//! acknowledged the whole batch.

pub mod kafka_source;
pub mod logfile;
pub mod webhook;

pub use webhook::{AuditConfig, AuditError, WebhookServer};

/// The audit sources of one process: the webhook, a tailer per configured log file, and the Kafka sources.
pub struct AuditSources {
    pub webhook: WebhookServer,
    tailers: Vec<tokio::task::JoinHandle<Result<(), logfile::TailError>>>,
    kafka_sources: Vec<tokio::task::JoinHandle<Result<(), kafka_source::SourceError>>>,
}

impl AuditSources {
    /// Starts the webhook, the tailers (audit logs, cloud activity files) and the Kafka sources (connected first:
    /// a source that cannot connect stops the start); all stop when `shutdown` fires. `kafka` is the pipeline's
    /// connection, the default of the Kafka sources.
    pub async fn start(
        config: &AuditConfig,
        bus: &palisade_runtime::Bus,
        kafka: Option<&palisade_runtime::KafkaConfig>,
        cluster: &str,
        topics: &palisade_runtime::TopicsConfig,
        shutdown: &palisade_runtime::Shutdown,
    ) -> Result<Self, AuditError> {
        let mut kafka_sources = Vec::new();
        for source in &config.kafka_sources {
            let source =
                kafka_source::KafkaSource::connect(source, kafka, cluster, &topics.audit_events, &topics.dead_letter)
                    .await
                    .map_err(|e| AuditError::Source(e.to_string()))?;
            kafka_sources.push(tokio::spawn(source.run(bus.clone(), shutdown.clone())));
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
        Ok(Self { webhook, tailers, kafka_sources })
    }

    /// Waits until the webhook has answered its last batch and every tailer has saved its position.
    pub async fn finished(self) {
        self.webhook.task.await.ok();
        for tailer in self.tailers {
            if let Ok(Err(error)) = tailer.await {
                tracing::error!(%error, "audit log tailer stopped");
            }
        }
        for source in self.kafka_sources {
            if let Ok(Err(error)) = source.await {
                tracing::error!(%error, "audit Kafka source stopped");
            }
        }
    }
}
