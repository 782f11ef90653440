//! `palisade audit`: receives kube-apiserver audit batches on a TLS webhook, maps each event to an
//! `AuditEvent` and publishes it to `palisade.audit.events`, answering the API server only after the bus
//! acknowledged the whole batch.

pub mod logfile;
pub mod webhook;

pub use webhook::{AuditConfig, AuditError, WebhookServer};

/// Starts a tailer for every configured audit log file.
pub fn spawn_log_tailers(
    config: &AuditConfig,
    bus: &palisade_runtime::Bus,
    cluster: &str,
    topic: &str,
    dead_letter_topic: &str,
    shutdown: &palisade_runtime::Shutdown,
) -> Vec<tokio::task::JoinHandle<Result<(), logfile::TailError>>> {
    config
        .log_paths
        .iter()
        .map(|path| {
            let tailer = logfile::Tailer::new(
                path,
                &config.log_position_dir,
                cluster,
                topic,
                dead_letter_topic,
                std::time::Duration::from_millis(config.log_poll_interval_ms.max(1)),
            );
            tokio::spawn(tailer.run(bus.clone(), shutdown.clone()))
        })
        .collect()
}
