//! `palisade audit`: receives kube-apiserver audit batches on a TLS webhook, maps each event to an
//! `AuditEvent` and publishes it to `palisade.audit.events`, answering the API server only after the bus
//! acknowledged the whole batch.

pub mod logfile;
pub mod webhook;

pub use webhook::{AuditConfig, AuditError, WebhookServer};

/// The audit sources of one process: the webhook and a tailer per configured log file.
pub struct AuditSources {
    pub webhook: WebhookServer,
    tailers: Vec<tokio::task::JoinHandle<Result<(), logfile::TailError>>>,
}

impl AuditSources {
    /// Starts the webhook and the tailers (audit logs, cloud activity files); all stop when `shutdown` fires.
    pub async fn start(
        config: &AuditConfig,
        bus: &palisade_runtime::Bus,
        cluster: &str,
        topics: &palisade_runtime::TopicsConfig,
        shutdown: &palisade_runtime::Shutdown,
    ) -> Result<Self, AuditError> {
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
        Ok(Self { webhook, tailers })
    }

    /// Waits until the webhook has answered its last batch and every tailer has saved its position.
    pub async fn finished(self) {
        self.webhook.task.await.ok();
        for tailer in self.tailers {
            if let Ok(Err(error)) = tailer.await {
                tracing::error!(%error, "audit log tailer stopped");
            }
        }
    }
}
