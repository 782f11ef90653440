//! `[enrich.kubernetes]`: where enrich lists and watches the cluster (an API server address, or in-cluster defaults),
//! its credentials, and how long an alert may wait for its pod.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("enrich.kubernetes: {0}")]
    Config(String),
}

/// Default paths of a pod's service-account credentials (used when `api_server` is not set).
const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const IN_CLUSTER_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// `[enrich.kubernetes]`: where to list and watch pods, and how long an alert may wait for its pod.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// API server URL. Unset: in-cluster (`KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, with the pod's
    /// service-account token and CA as defaults for the two paths below).
    #[serde(default)]
    pub api_server: Option<String>,
    /// File holding a bearer token; read again at every (re)connect, so a rotated token is picked up.
    #[serde(default)]
    pub token_path: Option<PathBuf>,
    /// PEM CA that signed the API server's certificate.
    #[serde(default)]
    pub ca_path: Option<PathBuf>,
    /// PEM client certificate and key, for client-certificate authentication instead of a token.
    #[serde(default)]
    pub client_cert_path: Option<PathBuf>,
    #[serde(default)]
    pub client_key_path: Option<PathBuf>,
    /// Longest time a container alert waits for its pod to appear in the table, in milliseconds; it is then
    /// sent with the missing fields marked unknown. 0 sends at once. Other alerts are not held up meanwhile.
    #[serde(default = "default_context_wait_ms")]
    pub context_wait_ms: u64,
    /// Most alerts waiting at once; an alert that finds the room full is sent at once (counted).
    #[serde(default = "default_max_waiting")]
    pub max_waiting: usize,
    /// Objects per page of each list.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The server ends each watch after this many seconds (1-3600); it is then resumed from the last resource
    /// version.
    #[serde(default = "default_watch_timeout_secs")]
    pub watch_timeout_secs: u64,
}

const fn default_context_wait_ms() -> u64 {
    2000
}
const fn default_max_waiting() -> usize {
    10_000
}
const fn default_page_size() -> u32 {
    500
}
const fn default_watch_timeout_secs() -> u64 {
    300
}

impl KubernetesConfig {
    pub fn context_wait(&self) -> Duration {
        Duration::from_millis(self.context_wait_ms)
    }

    /// The API server address and the credential paths, with the in-cluster defaults filled in.
    pub(super) fn resolved(&self) -> Result<(String, Option<PathBuf>, Option<PathBuf>), WatchError> {
        if let Some(url) = &self.api_server {
            return Ok((url.trim_end_matches('/').to_owned(), self.token_path.clone(), self.ca_path.clone()));
        }
        let (Ok(host), Ok(port)) = (std::env::var("KUBERNETES_SERVICE_HOST"), std::env::var("KUBERNETES_SERVICE_PORT"))
        else {
            return Err(WatchError::Config(
                "enrich.kubernetes.api_server is not set and this is not a pod (no KUBERNETES_SERVICE_HOST/PORT)"
                    .into(),
            ));
        };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let token = self.token_path.clone().or_else(|| Some(PathBuf::from(IN_CLUSTER_TOKEN)));
        let ca = self.ca_path.clone().or_else(|| Some(PathBuf::from(IN_CLUSTER_CA)));
        Ok((format!("https://{host}:{port}"), token, ca))
    }
}
