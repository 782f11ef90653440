use palisade_runtime::{BusError, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    DetectConfig(#[from] palisade_detect::config::DetectConfigError),
    #[error(transparent)]
    EnrichConfig(#[from] palisade_enrich::EnrichConfigError),
    #[error(transparent)]
    PodWatch(#[from] palisade_enrich::kubernetes::WatchError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Codec(#[from] palisade_schemas::CodecError),
    #[error(transparent)]
    Audit(#[from] palisade_audit::AuditError),
    #[error(transparent)]
    Collect(#[from] palisade_collect::CollectError),
    #[error(transparent)]
    OpenSearch(#[from] palisade_sink::OpenSearchError),
    #[error(transparent)]
    Webhook(#[from] palisade_sink::WebhookError),
    #[error("alerts file {path}: {source}")]
    AlertsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`palisade {stage}` runs against Kafka: set kafka.bootstrap_servers (or PALISADE__KAFKA__BOOTSTRAP_SERVERS)"
    )]
    KafkaRequired { stage: &'static str },
    #[error("the {stage} stage ended while the rest ran")]
    StageEnded { stage: &'static str },
    #[error("metrics endpoint: {0}")]
    Metrics(#[source] std::io::Error),
    #[error("{path}: {source}")]
    Input {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("detector state checkpoint {path}: {reason}; delete it to start the windows empty")]
    Checkpoint { path: String, reason: String },
    #[error("detector state changelog {topic}: {reason}")]
    Changelog { topic: String, reason: String },
    #[error("cannot write the generated audit webhook token to {path}: {source}; set audit.token_file")]
    WebhookToken {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("replay: {reason}")]
    Replay { reason: String },
    #[error("test alert: {0}")]
    TestAlert(String),
}
