//! Webhook output: each batch of alerts POSTed as one JSON array (Palisade alerts, or OCSF Detection Findings) to
//! a SOAR, chat or ticketing endpoint. Transport errors, 408, 429 and 5xx are retried with exponential backoff
//! until the endpoint answers; another 4xx is the endpoint refusing the batch, which the caller dead-letters with
//! the reason. The bearer token comes from a file or `PALISADE_WEBHOOK_TOKEN`, never from the configuration.

use std::path::PathBuf;
use std::time::Duration;

use palisade_schemas::Alert;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;

use crate::{http, ocsf};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The alerts as the alerts topic's JSON.
    #[default]
    Json,
    /// OCSF 1.4 Detection Findings.
    Ocsf,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where each batch is POSTed.
    pub url: String,
    /// File holding a bearer token (`Authorization: Bearer <token>`); or `PALISADE_WEBHOOK_TOKEN`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for TLS, besides the system roots.
    #[serde(default)]
    pub ca_cert_path: Option<PathBuf>,
    /// Body format.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Most alerts in one request.
    #[serde(default = "default_batch_max_alerts")]
    pub batch_max_alerts: usize,
    /// Longest wait for more alerts before a partial batch is sent, in milliseconds.
    #[serde(default = "default_batch_max_wait_ms")]
    pub batch_max_wait_ms: u64,
    /// Timeout of one request, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// First retry delay, in milliseconds; doubles up to the maximum.
    #[serde(default = "default_retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// Largest retry delay, in milliseconds.
    #[serde(default = "default_retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
}

const fn default_batch_max_alerts() -> usize {
    100
}
const fn default_batch_max_wait_ms() -> u64 {
    500
}
const fn default_request_timeout_secs() -> u64 {
    10
}
const fn default_retry_initial_backoff_ms() -> u64 {
    250
}
const fn default_retry_max_backoff_ms() -> u64 {
    10_000
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("sink.webhook: {0}")]
    Config(String),
}

/// What became of a batch: delivered, or refused by the endpoint (with its answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Accepted,
    Refused(String),
}

pub struct WebhookWriter {
    client: reqwest::Client,
    config: WebhookConfig,
}

impl WebhookWriter {
    pub fn new(config: &WebhookConfig) -> Result<Self, WebhookError> {
        let token = match &config.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| WebhookError::Config(format!("token file {}: {e}", path.display())))?,
            ),
            None => std::env::var("PALISADE_WEBHOOK_TOKEN").ok(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| WebhookError::Config("the token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(config.request_timeout_secs))
            .user_agent(concat!("palisade-sink/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_cert_path {
            let certificate = http::root_certificate(path)
                .map_err(|reason| WebhookError::Config(format!("CA {}: {reason}", path.display())))?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder.build().map_err(|e| WebhookError::Config(e.to_string()))?;
        let mut config = config.clone();
        config.batch_max_alerts = config.batch_max_alerts.max(1);
        Ok(Self { client, config })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// The request body for a batch.
    pub fn body(&self, alerts: &[Alert]) -> Vec<u8> {
        let values: Vec<serde_json::Value> = match self.config.format {
            WebhookFormat::Json => alerts.iter().map(|a| serde_json::to_value(a).expect("alerts serialize")).collect(),
            WebhookFormat::Ocsf => alerts.iter().map(ocsf::detection_finding).collect(),
        };
        serde_json::to_vec(&values).expect("JSON to memory")
    }

    fn backoff(&self, attempt: u32) -> Duration {
        http::backoff(self.config.retry_initial_backoff_ms, self.config.retry_max_backoff_ms, attempt)
    }

    /// POSTs the batch until the endpoint accepts or refuses it.
    pub async fn send(&self, alerts: &[Alert]) -> Delivered {
        let body = self.body(alerts);
        let mut attempt = 0u32;
        loop {
            let outcome = self.client.post(&self.config.url).body(body.clone()).send().await;
            let failure = match outcome {
                Ok(response) if response.status().is_success() => return Delivered::Accepted,
                Ok(response) => {
                    let status = response.status();
                    let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                    let text: String = response.text().await.unwrap_or_default().chars().take(300).collect();
                    if !retry {
                        return Delivered::Refused(format!("webhook answered {status}: {text}"));
                    }
                    format!("HTTP {status}")
                }
                Err(error) => error.to_string(),
            };
            palisade_telemetry::OutputRetried { output: "webhook" }.emit();
            tracing::warn!(error = %failure, attempt, "webhook delivery failed; retrying");
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WebhookConfig {
        WebhookConfig {
            url: "http://127.0.0.1:9/hook".into(),
            token_file: None,
            ca_cert_path: None,
            format: WebhookFormat::Json,
            batch_max_alerts: 0,
            batch_max_wait_ms: 1,
            request_timeout_secs: 1,
            retry_initial_backoff_ms: 100,
            retry_max_backoff_ms: 1000,
        }
    }

    fn alert() -> Alert {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/alert.v4.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn bodies_are_json_arrays_of_alerts_or_findings_and_backoff_is_capped() {
        let writer = WebhookWriter::new(&config()).unwrap();
        assert_eq!(writer.config().batch_max_alerts, 1, "a batch holds at least one alert");
        let body: serde_json::Value = serde_json::from_slice(&writer.body(&[alert(), alert()])).unwrap();
        assert_eq!(body.as_array().map(Vec::len), Some(2));
        assert_eq!(body[0]["alert_type"], "K8S_PrivilegedContainer");
        let ocsf = WebhookWriter::new(&WebhookConfig { format: WebhookFormat::Ocsf, ..config() }).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&ocsf.body(&[alert()])).unwrap();
        assert_eq!(body[0]["class_uid"], 2004);
        let delays: Vec<u128> = [0, 1, 2, 3, 10].iter().map(|n| writer.backoff(*n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000]);
    }

    #[test]
    fn a_missing_token_file_is_a_start_up_error() {
        let missing = WebhookConfig { token_file: Some("/nonexistent/token".into()), ..config() };
        assert!(
            matches!(WebhookWriter::new(&missing), Err(WebhookError::Config(m)) if m.contains("/nonexistent/token"))
        );
    }
}
