use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Address the webhook listens on (`ip:port`).
    #[serde(default = "default_listen_addr")]
    pub listen_addr: String,
    /// PEM certificate chain for TLS. With `tls_key_path`; when both are absent a self-signed pair is generated
    /// (fine for `palisade run`, not for a cluster: the API server must trust the certificate).
    #[serde(default)]
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key for TLS.
    #[serde(default)]
    pub tls_key_path: Option<PathBuf>,
    /// Serve plain HTTP, for a webhook behind a TLS-terminating proxy.
    #[serde(default)]
    pub tls_disabled: bool,
    /// File holding the bearer token the API server presents (the `token`/`tokenFile` of its webhook
    /// kubeconfig). An empty file is refused at start-up.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// CA (PEM) whose client certificates authenticate the API server (the `client-certificate` of its webhook
    /// kubeconfig). With a token file as well, either credential is enough. TLS only: refused with `tls_disabled`.
    #[serde(default)]
    pub client_ca_path: Option<PathBuf>,
    /// Names a client certificate must carry to authenticate, matched exactly against its subject common name and
    /// its DNS alternative names (e.g. `["kube-apiserver"]`); empty: any certificate `client_ca_path` signed, which
    /// with a cluster CA means every kubelet and every certificate the cluster issued.
    #[serde(default)]
    pub client_certificate_names: Vec<String>,
    /// Serve without any credential (no token file, no client CA). Off by default: the webhook then refuses to
    /// start, since anyone who reaches it could forge audit events or flood it.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// A client must send its request line and headers within this time, in milliseconds; an idle keep-alive
    /// connection is closed after it too.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// An authenticated request's body must arrive within this time, in milliseconds (408 otherwise).
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Connections open at once; further connections are closed at once and counted
    /// (`palisade_dropped_total{component="audit-webhook"}`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one source address, so one peer cannot take every slot from the API server.
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// Accept HTTP/2 (the API server speaks HTTP/1.1 to webhooks; off, an HTTP/2 connection is closed).
    #[serde(default)]
    pub http2_enabled: bool,
    /// Largest request body accepted, in bytes; larger batches get 413.
    #[serde(default = "default_body_limit_bytes")]
    pub body_limit_bytes: usize,
    /// Batches processed at once; more get 429 with Retry-After.
    #[serde(default = "default_max_in_flight_requests")]
    pub max_in_flight_requests: usize,
    /// Seconds the API server is told to wait (Retry-After) when refused under load.
    #[serde(default = "default_retry_after_secs")]
    pub retry_after_secs: u64,
    /// Audit log files (kube-apiserver `--audit-log-path`) to tail besides the webhook; empty: none.
    #[serde(default)]
    pub log_paths: Vec<PathBuf>,
    /// Cloud activity files to tail (AWS CloudTrail or Azure activity log records as JSON lines, e.g. what a
    /// log shipper writes from the trail's bucket or the activity log's Event Hub) into `palisade.cloud.activity`.
    #[serde(default)]
    pub cloud_log_paths: Vec<PathBuf>,
    /// Audit events read from Kafka topics, as managed clusters export them (AKS diagnostic settings through
    /// Event Hubs' Kafka endpoint, a GKE Log Router export, a log shipper); see `kafka_source`.
    #[serde(default)]
    pub kafka_sources: Vec<crate::kafka_source::KafkaSourceConfig>,
    /// Audit events read from CloudWatch Logs groups, as EKS delivers them; see `cloudwatch_source`.
    #[serde(default)]
    pub cloudwatch_sources: Vec<crate::cloudwatch_source::CloudWatchSourceConfig>,
    /// Where the tail positions (and the CloudWatch sources' positions) are kept across restarts.
    #[serde(default = "default_log_position_dir")]
    pub log_position_dir: PathBuf,
    /// How often the log files are checked for new lines, in milliseconds.
    #[serde(default = "default_log_poll_interval_ms")]
    pub log_poll_interval_ms: u64,
}

fn default_log_position_dir() -> PathBuf {
    PathBuf::from("/var/lib/palisade/audit-log-positions")
}
const fn default_log_poll_interval_ms() -> u64 {
    250
}

const fn default_header_timeout_ms() -> u64 {
    10_000
}
const fn default_body_timeout_ms() -> u64 {
    30_000
}
const fn default_max_connections() -> usize {
    256
}
const fn default_max_connections_per_source() -> usize {
    32
}

fn default_listen_addr() -> String {
    "127.0.0.1:8443".to_owned()
}
const fn default_body_limit_bytes() -> usize {
    16 * 1024 * 1024
}
const fn default_max_in_flight_requests() -> usize {
    32
}
const fn default_retry_after_secs() -> u64 {
    1
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            listen_addr: default_listen_addr(),
            tls_cert_path: None,
            tls_key_path: None,
            tls_disabled: false,
            token_file: None,
            client_ca_path: None,
            client_certificate_names: Vec::new(),
            allow_unauthenticated: false,
            header_timeout_ms: default_header_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            max_connections: default_max_connections(),
            max_connections_per_source: default_max_connections_per_source(),
            http2_enabled: false,
            body_limit_bytes: default_body_limit_bytes(),
            max_in_flight_requests: default_max_in_flight_requests(),
            retry_after_secs: default_retry_after_secs(),
            log_paths: Vec::new(),
            cloud_log_paths: Vec::new(),
            kafka_sources: Vec::new(),
            cloudwatch_sources: Vec::new(),
            log_position_dir: default_log_position_dir(),
            log_poll_interval_ms: default_log_poll_interval_ms(),
        }
    }
}
