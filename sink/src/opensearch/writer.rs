//! `_bulk` writer with retries: transport errors, 429 and 5xx are retried with exponential backoff until they
//! succeed; items rejected for their content (mapping errors and other 4xx) are returned to the caller, which
//! dead-letters them. A request the node refuses as too large (413, over its `http.max_content_length`) is split
//! in halves, never retried as it is; one alert that is too large alone is rejected. Every item ends either
//! indexed or rejected with a reason.

use std::path::Path;
use std::time::Duration;

use palisade_schemas::Alert;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

use super::config::{OpenSearchConfig, TemplatePolicy};
use crate::{ecs, http};

#[derive(Debug, thiserror::Error)]
pub enum OpenSearchError {
    #[error("cannot read {what} from {path}: {source}")]
    Secret {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS CA certificate {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("{url} is not healthy: {reason}; check sink.opensearch.url and credentials")]
    Unhealthy { url: String, reason: String },
    #[error("installing the index template failed: {0}")]
    Template(String),
    #[error("index retention: {0}")]
    Retention(String),
}

/// Result of writing a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    pub indexed: usize,
    /// (alert id, reason) of items the node refused for their content.
    pub rejected: Vec<(String, String)>,
}

pub struct OpenSearchWriter {
    client: reqwest::Client,
    config: OpenSearchConfig,
    base: String,
}

fn read_secret(path: &Path, what: &'static str) -> Result<String, OpenSearchError> {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).map_err(|source| OpenSearchError::Secret {
        what,
        path: path.display().to_string(),
        source,
    })
}

impl OpenSearchWriter {
    pub fn new(config: &OpenSearchConfig) -> Result<Self, OpenSearchError> {
        let mut headers = HeaderMap::new();
        let api_key = match &config.api_key_file {
            Some(path) => Some(read_secret(path, "the API key")?),
            None => std::env::var("PALISADE_OPENSEARCH_API_KEY").ok(),
        };
        if let Some(key) = api_key {
            let mut value = HeaderValue::from_str(&format!("ApiKey {key}"))
                .map_err(|e| OpenSearchError::Client(format!("API key is not a valid header: {e}")))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(config.request_timeout_secs));
        if let Some(path) = &config.ca_cert_path {
            let certificate = http::root_certificate(path)
                .map_err(|reason| OpenSearchError::Ca { path: path.display().to_string(), reason })?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder.build().map_err(|e| OpenSearchError::Client(e.to_string()))?;
        let mut config = config.clone();
        if config.username.is_some()
            && config.password_file.is_none()
            && std::env::var("PALISADE_OPENSEARCH_PASSWORD").is_err()
        {
            tracing::warn!("sink.opensearch.username is set without a password file or PALISADE_OPENSEARCH_PASSWORD");
        }
        if config.batch_max_alerts == 0 {
            config.batch_max_alerts = 1;
        }
        Ok(Self { client, base: config.url.trim_end_matches('/').to_owned(), config })
    }

    pub fn config(&self) -> &OpenSearchConfig {
        &self.config
    }

    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder, OpenSearchError> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(user) = &self.config.username {
            let password = match &self.config.password_file {
                Some(path) => Some(read_secret(path, "the password")?),
                None => std::env::var("PALISADE_OPENSEARCH_PASSWORD").ok(),
            };
            request = request.basic_auth(user, password);
        }
        Ok(request)
    }

    /// Start-up check: the node answers and its cluster is at least yellow; then installs the index template.
    pub async fn prepare(&self) -> Result<(), OpenSearchError> {
        let unhealthy = |reason: String| OpenSearchError::Unhealthy { url: self.base.clone(), reason };
        let response = self
            .request(reqwest::Method::GET, "/_cluster/health?wait_for_status=yellow&timeout=10s")?
            .send()
            .await
            .map_err(|e| unhealthy(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unhealthy(format!("HTTP {}", response.status())));
        }
        self.install_template().await
    }

    /// Installs Palisade's index template when none of its name exists, or always with `template = "replace"`.
    /// A kept template older than Palisade's is reported, not changed: it may hold the user's edits.
    async fn install_template(&self) -> Result<(), OpenSearchError> {
        let failed = |reason: String| OpenSearchError::Template(reason);
        let path = format!("/_index_template/{}", self.config.index_prefix);
        if self.config.template == TemplatePolicy::Keep {
            let response =
                self.request(reqwest::Method::GET, &path)?.send().await.map_err(|e| failed(e.to_string()))?;
            let status = response.status();
            if status.is_success() {
                let existing: Value = response.json().await.map_err(|e| failed(e.to_string()))?;
                let version = existing.pointer("/index_templates/0/index_template/version").and_then(Value::as_u64);
                if version.is_none_or(|version| version < ecs::INDEX_TEMPLATE_VERSION) {
                    tracing::warn!(
                        template = %self.config.index_prefix,
                        existing = ?version,
                        palisade = ecs::INDEX_TEMPLATE_VERSION,
                        "the index template is older than this Palisade's and is kept (it may hold your edits); \
                         set sink.opensearch.template = \"replace\" to install Palisade's"
                    );
                }
                return Ok(());
            }
            if status != reqwest::StatusCode::NOT_FOUND {
                return Err(failed(format!(
                    "reading it: HTTP {status}: {}",
                    response.text().await.unwrap_or_default()
                )));
            }
        }
        let template = ecs::index_template(
            &self.config.index_prefix,
            self.config.number_of_shards,
            self.config.number_of_replicas,
        );
        let response = self
            .request(reqwest::Method::PUT, &path)?
            .json(&template)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(failed(format!("HTTP {status}: {}", response.text().await.unwrap_or_default())));
        }
        tracing::info!(template = %self.config.index_prefix, version = ecs::INDEX_TEMPLATE_VERSION, "index template installed");
        Ok(())
    }

    /// Deletes the daily indices older than `retention_days` (as of `now_ms`); returns their names. Only names
    /// of the form `<prefix>-YYYY.MM.DD` are considered, so nothing else matching the pattern is touched.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<Vec<String>, OpenSearchError> {
        let retention = i64::from(self.config.retention_days);
        if retention == 0 {
            return Ok(Vec::new());
        }
        let failed = |reason: String| OpenSearchError::Retention(reason);
        let prefix = &self.config.index_prefix;
        let response = self
            .request(reqwest::Method::GET, &format!("/_cat/indices/{prefix}-*?format=json&h=index"))?
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("listing indices: HTTP {}", response.status())));
        }
        let listed: Vec<Value> = response.json().await.map_err(|e| failed(e.to_string()))?;
        let today = now_ms.div_euclid(86_400_000);
        let mut expired: Vec<String> = listed
            .iter()
            .filter_map(|entry| entry.get("index").and_then(Value::as_str))
            .filter(|name| ecs::index_day(prefix, name).is_some_and(|day| day < today - retention))
            .map(str::to_owned)
            .collect();
        expired.sort();
        for name in &expired {
            let response = self
                .request(reqwest::Method::DELETE, &format!("/{name}"))?
                .send()
                .await
                .map_err(|e| failed(e.to_string()))?;
            if !response.status().is_success() {
                return Err(failed(format!("deleting {name}: HTTP {}", response.status())));
            }
            tracing::info!(index = %name, retention_days = retention, "deleted an alerts index past its retention");
        }
        Ok(expired)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        http::backoff(self.config.retry_initial_backoff_ms, self.config.retry_max_backoff_ms, attempt)
    }

    /// Writes `alerts`; returns once every alert is indexed or rejected for its content.
    pub async fn write(&self, alerts: &[Alert]) -> Result<BulkOutcome, OpenSearchError> {
        let mut outcome = BulkOutcome::default();
        // Requests still to make, the next at the end: a batch split for its size goes on in order.
        let mut chunks: Vec<Vec<&Alert>> = vec![alerts.iter().collect()];
        let mut attempt = 0u32;
        while let Some(pending) = chunks.pop() {
            if pending.is_empty() {
                continue;
            }
            let mut body = Vec::with_capacity(pending.len() * 2048);
            for alert in &pending {
                let action = serde_json::json!({"index": {"_index": ecs::index_name(&self.config.index_prefix, alert), "_id": alert.id}});
                serde_json::to_writer(&mut body, &action).expect("JSON to memory");
                body.push(b'\n');
                serde_json::to_writer(&mut body, &ecs::document(alert)).expect("JSON to memory");
                body.push(b'\n');
            }
            let body_bytes = body.len();
            let sent = self
                .request(reqwest::Method::POST, "/_bulk")?
                .header(CONTENT_TYPE, "application/x-ndjson")
                .body(body)
                .send()
                .await;
            let response = match sent {
                Ok(response) if response.status() == reqwest::StatusCode::PAYLOAD_TOO_LARGE => {
                    // The same request would be refused for ever: halve it, or give up on the one alert.
                    if let [alert] = pending[..] {
                        let reason = format!(
                            "HTTP 413: its document ({body_bytes} bytes) is over the node's http.max_content_length"
                        );
                        outcome.rejected.push((alert.id.clone(), reason));
                    } else {
                        tracing::warn!(
                            alerts = pending.len(),
                            bytes = body_bytes,
                            "bulk request too large; splitting it"
                        );
                        let (first, second) = pending.split_at(pending.len() / 2);
                        chunks.push(second.to_vec());
                        chunks.push(first.to_vec());
                    }
                    continue;
                }
                Ok(response) if response.status().is_success() => response,
                Ok(response) => {
                    tracing::warn!(status = %response.status(), "bulk request refused; retrying");
                    self.retry_wait(&mut attempt).await;
                    chunks.push(pending);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "bulk request failed; retrying");
                    self.retry_wait(&mut attempt).await;
                    chunks.push(pending);
                    continue;
                }
            };
            let parsed: Value = match response.json().await {
                Ok(parsed) => parsed,
                Err(error) => {
                    tracing::warn!(%error, "unreadable bulk response; retrying the batch");
                    self.retry_wait(&mut attempt).await;
                    chunks.push(pending);
                    continue;
                }
            };
            let items = parsed.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            if items.len() != pending.len() {
                tracing::warn!(
                    expected = pending.len(),
                    got = items.len(),
                    "bulk response item count differs; retrying"
                );
                self.retry_wait(&mut attempt).await;
                chunks.push(pending);
                continue;
            }
            let mut retry = Vec::new();
            for (alert, item) in pending.iter().zip(items) {
                let result = item.get("index").cloned().unwrap_or(Value::Null);
                let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
                match status {
                    200..=299 => outcome.indexed += 1,
                    429 | 500..=599 | 0 => retry.push(*alert),
                    _ => {
                        let error = result.get("error").cloned().unwrap_or(Value::Null);
                        let reason = format!(
                            "HTTP {status} {}: {}",
                            error.get("type").and_then(Value::as_str).unwrap_or("error"),
                            error.get("reason").and_then(Value::as_str).unwrap_or("rejected")
                        );
                        outcome.rejected.push((alert.id.clone(), reason));
                    }
                }
            }
            if !retry.is_empty() {
                self.retry_wait(&mut attempt).await;
                chunks.push(retry);
            }
        }
        Ok(outcome)
    }

    async fn retry_wait(&self, attempt: &mut u32) {
        palisade_telemetry::OutputRetried { output: "opensearch" }.emit();
        tokio::time::sleep(self.backoff(*attempt)).await;
        *attempt += 1;
    }
}
