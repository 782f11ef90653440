use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OpenSearchConfig {
    /// Base URL of Elasticsearch or OpenSearch, e.g. `https://search.example:9200`.
    pub url: String,
    /// Indices are `<index_prefix>-YYYY.MM.DD` (UTC day the alert was raised): a new index each day.
    #[serde(default = "default_index_prefix")]
    pub index_prefix: String,
    /// Daily indices older than this many days are deleted (at start-up, then hourly); 0 keeps them all.
    /// Only names of the form `<index_prefix>-YYYY.MM.DD` are considered.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Basic-auth user; the password comes from `password_file` or `PALISADE_OPENSEARCH_PASSWORD`.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the basic-auth password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// File holding an API key (sent as `Authorization: ApiKey <key>`); or `PALISADE_OPENSEARCH_API_KEY`.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// PEM CA certificate to trust for TLS, besides the system roots.
    #[serde(default)]
    pub ca_cert_path: Option<PathBuf>,
    /// Most alerts in one `_bulk` request.
    #[serde(default = "default_batch_max_alerts")]
    pub batch_max_alerts: usize,
    /// Longest wait for more alerts before a partial batch is sent, in milliseconds.
    #[serde(default = "default_batch_max_wait_ms")]
    pub batch_max_wait_ms: u64,
    /// Timeout of one HTTP request, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// First retry delay after a failed or throttled request, in milliseconds; doubles up to the maximum.
    #[serde(default = "default_retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// Largest retry delay, in milliseconds. Retries go on until the node answers: nothing is dropped.
    #[serde(default = "default_retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
    /// Primary shards of each daily index (the index template's `number_of_shards`).
    #[serde(default = "default_number_of_shards")]
    pub number_of_shards: u32,
    /// Replicas of each daily index; 0 only on a single node, where a replica has nowhere to go.
    #[serde(default = "default_number_of_replicas")]
    pub number_of_replicas: u32,
    /// An index template of the same name that already exists: `keep` it (the default: edits made to it survive
    /// restarts; a template older than this Palisade's is reported) or `replace` it with Palisade's.
    #[serde(default)]
    pub template: TemplatePolicy,
}

/// `sink.opensearch.template`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TemplatePolicy {
    #[default]
    Keep,
    Replace,
}

fn default_index_prefix() -> String {
    "palisade-alerts".to_owned()
}
const fn default_retention_days() -> u32 {
    90
}
const fn default_batch_max_alerts() -> usize {
    500
}
const fn default_batch_max_wait_ms() -> u64 {
    200
}
const fn default_request_timeout_secs() -> u64 {
    30
}
const fn default_number_of_shards() -> u32 {
    1
}
const fn default_number_of_replicas() -> u32 {
    1
}
const fn default_retry_initial_backoff_ms() -> u64 {
    250
}
const fn default_retry_max_backoff_ms() -> u64 {
    10_000
}

impl OpenSearchConfig {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            index_prefix: default_index_prefix(),
            retention_days: default_retention_days(),
            username: None,
            password_file: None,
            api_key_file: None,
            ca_cert_path: None,
            batch_max_alerts: default_batch_max_alerts(),
            batch_max_wait_ms: default_batch_max_wait_ms(),
            request_timeout_secs: default_request_timeout_secs(),
            retry_initial_backoff_ms: default_retry_initial_backoff_ms(),
            retry_max_backoff_ms: default_retry_max_backoff_ms(),
            number_of_shards: default_number_of_shards(),
            number_of_replicas: default_number_of_replicas(),
            template: TemplatePolicy::Keep,
        }
    }
}
