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
    /// Starts the webhook and the tailers; both stop when `shutdown` fires.
    pub async fn start(
        config: &AuditConfig,
        bus: &palisade_runtime::Bus,
        cluster: &str,
        topic: &str,
        dead_letter_topic: &str,
        shutdown: &palisade_runtime::Shutdown,
    ) -> Result<Self, AuditError> {
        let webhook =
            WebhookServer::start(config, bus.clone(), topic, dead_letter_topic, cluster, shutdown.clone()).await?;
        let poll = std::time::Duration::from_millis(config.log_poll_interval_ms.max(1));
        let tailers = config
            .log_paths
            .iter()
            .map(|path| {
                let tailer =
                    logfile::Tailer::new(path, &config.log_position_dir, cluster, topic, dead_letter_topic, poll);
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
