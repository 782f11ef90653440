//! The whole configuration: one TOML file plus `PALISADE__*` environment overrides (see runtime::config).

use std::path::PathBuf;

use palisade_audit::AuditConfig;
use palisade_collect::CollectConfig;
use palisade_detect::DetectConfig;
use palisade_enrich::EnrichConfig;
use palisade_runtime::{ConfigError, KafkaConfig, RuntimeConfig, TopicsConfig};
use palisade_sink::OpenSearchConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PalisadeConfig {
    /// Cluster name carried by every alert.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// Node name for collector events; default `$NODE_NAME`, else the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Log JSON lines instead of text.
    #[serde(default)]
    pub log_json: bool,
    /// Kafka; absent means the in-process bus (`palisade run` only).
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// Topic names.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Address of the Prometheus `/metrics` endpoint, e.g. `0.0.0.0:9464`; absent disables it.
    #[serde(default)]
    pub metrics_listen_addr: Option<String>,
    /// The audit webhook.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The eBPF node collector.
    #[serde(default)]
    pub collect: CollectConfig,
    /// Alert types: enable, re-rate, except.
    #[serde(default)]
    pub detect: DetectConfig,
    /// Enrichment.
    #[serde(default)]
    pub enrich: EnrichConfig,
    /// Alert outputs.
    #[serde(default)]
    pub sink: SinkConfig,
    /// Trace export (`[telemetry.otlp]`).
    #[serde(default)]
    pub telemetry: crate::otlp::TelemetryConfig,
}

fn default_cluster() -> String {
    "default".to_owned()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlertsFormat {
    /// Avro single-object encoding (the newest schemas/avro/alert.vN.avsc).
    #[default]
    Avro,
    /// One JSON object per message.
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Write alerts to the alerts topic (`topics.alerts`).
    #[serde(default = "default_true")]
    pub alerts_topic: bool,
    /// Encoding of the alerts topic.
    #[serde(default)]
    pub alerts_format: AlertsFormat,
    /// Append alerts as JSON lines to this file.
    #[serde(default)]
    pub alerts_file: Option<PathBuf>,
    /// Print one line per alert on standard output.
    #[serde(default)]
    pub print_alerts: bool,
    /// Elasticsearch / OpenSearch output.
    #[serde(default)]
    pub opensearch: Option<OpenSearchConfig>,
    /// With Kafka: write the alerts topic in transactions that also commit the consumed offsets, so a
    /// `read_committed` reader sees each alert once, across sink crashes. Off: at-least-once (acknowledged sends).
    #[serde(default = "default_true")]
    pub exactly_once: bool,
    /// `transactional.id` of this sink instance; absent = `palisade-sink-<hostname>` (unique per pod, stable
    /// across its restarts, which is what fences a dead instance's open transaction).
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Also write each alert as OCSF 1.4 Detection Finding JSON (class 2004) to this topic, keyed by alert id and
    /// in the same transaction as the alerts topic (so exactly once too). Unset: no OCSF topic.
    #[serde(default)]
    pub ocsf_topic: Option<String>,
    /// Webhook output (`[sink.webhook]`): batches POSTed as JSON, with its own consumer group.
    #[serde(default)]
    pub webhook: Option<palisade_sink::WebhookConfig>,
}

const fn default_true() -> bool {
    true
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            alerts_topic: true,
            alerts_format: AlertsFormat::Avro,
            alerts_file: None,
            print_alerts: false,
            opensearch: None,
            exactly_once: true,
            transactional_id: None,
            ocsf_topic: None,
            webhook: None,
        }
    }
}

impl PalisadeConfig {
    /// Loads `path` (optional) with the process environment's overrides, then validates.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, crate::PipelineError> {
        let config: Self = palisade_runtime::config::load(path, std::env::vars())?;
        config.validate()?;
        Ok(config)
    }

    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            kafka: self.kafka.clone(),
            topics: self.topics.clone(),
            metrics_listen_addr: self.metrics_listen_addr.clone(),
        }
    }

    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
            .unwrap_or_else(|| "unknown-node".to_owned())
    }

    /// Pure checks across sections.
    pub fn validate(&self) -> Result<(), crate::PipelineError> {
        self.runtime().validate()?;
        self.detect.validate()?;
        if self.cluster.trim().is_empty() {
            return Err(ConfigError::Value { field: "cluster", reason: "empty".into() }.into());
        }
        let mut names = std::collections::BTreeSet::new();
        for source in &self.audit.kafka_sources {
            source.validate().map_err(|reason| ConfigError::Value { field: "audit.kafka_sources", reason })?;
            if !names.insert(source.name.as_str()) {
                let reason = format!("two sources are named `{}` (the name picks the consumer group)", source.name);
                return Err(ConfigError::Value { field: "audit.kafka_sources", reason }.into());
            }
            if source.connection(self.kafka.as_ref()).is_none() {
                let reason =
                    format!("source `{}` has no [audit.kafka_sources.kafka] and there is no [kafka]", source.name);
                return Err(ConfigError::Value { field: "audit.kafka_sources", reason }.into());
            }
        }
        if let Some(otlp) = &self.telemetry.otlp {
            otlp.validate().map_err(|reason| ConfigError::Value { field: "telemetry.otlp", reason })?;
        }
        let mut names = std::collections::BTreeSet::new();
        for source in &self.audit.cloudwatch_sources {
            source.validate().map_err(|reason| ConfigError::Value { field: "audit.cloudwatch_sources", reason })?;
            if !names.insert(source.name.as_str()) {
                let reason = format!("two sources are named `{}` (the name picks the position file)", source.name);
                return Err(ConfigError::Value { field: "audit.cloudwatch_sources", reason }.into());
            }
        }
        if let Some(opensearch) = &self.sink.opensearch
            && !(opensearch.url.starts_with("http://") || opensearch.url.starts_with("https://"))
        {
            return Err(ConfigError::Value {
                field: "sink.opensearch.url",
                reason: format!("`{}` must start with http:// or https://", opensearch.url),
            }
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses_and_matches_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/palisade.example.toml");
        let example: PalisadeConfig = palisade_runtime::config::load(Some(&path), Vec::new()).unwrap();
        example.validate().unwrap();
        let defaults: PalisadeConfig = palisade_runtime::config::load(None, Vec::new()).unwrap();
        assert_eq!(example, defaults, "deploy/palisade.example.toml documents the defaults");
    }

    #[test]
    fn cross_section_validation_names_the_field() {
        let mut config: PalisadeConfig = palisade_runtime::config::load(None, Vec::new()).unwrap();
        config.sink.opensearch = Some(OpenSearchConfig::new("search:9200"));
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("sink.opensearch.url"), "{error}");
    }
}
