//! List and watch of `/api/v1/pods` (all namespaces): a paged list fills the table, a watch from the list's
//! resource version keeps it current, resumed from the last version the server sent (bookmarks included) when
//! the server ends it, and relisted when that version has expired (410 Gone). The token file is read at each
//! connect, so a rotated service-account token is used; it never appears in a log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palisade_telemetry::{PodWatchRestarted, PodWatchState};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

use super::{ClusterView, KubernetesConfig, PodRecord, pod_record};

/// First pause after a failed list or watch; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest line of a watch stream accepted (one pod object).
const MAX_EVENT_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("enrich.kubernetes: {0}")]
    Config(String),
    #[error("API server: {0}")]
    Http(String),
    #[error("API server: the resource version has expired (410 Gone)")]
    Expired,
}

struct Api {
    client: reqwest::Client,
    base: String,
    token_path: Option<PathBuf>,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, WatchError> {
    std::fs::read(path).map_err(|e| WatchError::Config(format!("{what} {}: {e}", path.display())))
}

impl Api {
    fn new(config: &KubernetesConfig) -> Result<Self, WatchError> {
        let (base, token_path, ca_path) = config.resolved()?;
        // No overall timeout: a watch is one long response. Connecting is bounded, and so is a silent stream
        // (the server sends bookmarks, and ends the watch after `watch_timeout_secs`).
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(config.watch_timeout_secs + 60))
            .user_agent(concat!("palisade-enrich/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &ca_path {
            let certificate = reqwest::Certificate::from_pem(&read(path, "CA")?)
                .map_err(|e| WatchError::Config(format!("CA {}: {e}", path.display())))?;
            builder = builder.add_root_certificate(certificate);
        }
        match (&config.client_cert_path, &config.client_key_path) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert, "client certificate")?;
                pem.push(b'\n');
                pem.extend(read(key, "client key")?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| WatchError::Config(format!("client certificate {}: {e}", cert.display())))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err(WatchError::Config("client_cert_path and client_key_path go together".into())),
        }
        if let Some(path) = &token_path {
            read(path, "token file")?;
        }
        let client = builder.build().map_err(|e| WatchError::Config(e.to_string()))?;
        Ok(Self { client, base, token_path })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, WatchError> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(file) = &self.token_path {
            let token = read(file, "token file")?;
            let token = String::from_utf8_lossy(&token);
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| WatchError::Config(format!("token file {}: not a valid header", file.display())))?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(|e| WatchError::Http(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::GONE {
            return Err(WatchError::Expired);
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let reason = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|status| status.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(300).collect());
            return Err(WatchError::Http(format!("GET {path}: {status}: {reason}")));
        }
        Ok(response)
    }

    /// Every pod, page by page, and the resource version to watch from.
    async fn list(&self, page_size: u32) -> Result<(Vec<PodRecord>, String), WatchError> {
        let mut pods = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/pods?limit={}", page_size.max(1));
            if let Some(token) = &next {
                path.push_str("&continue=");
                path.push_str(&encode(token));
            }
            let page: Value =
                self.get(&path).await?.json().await.map_err(|e| WatchError::Http(format!("pod list: {e}")))?;
            pods.extend(page.get("items").and_then(Value::as_array).into_iter().flatten().filter_map(pod_record));
            next = page.pointer("/metadata/continue").and_then(Value::as_str).filter(|t| !t.is_empty()).map(Into::into);
            if next.is_none() {
                let version =
                    page.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
                return Ok((pods, version));
            }
        }
    }

    /// Follows the watch from `version` until the server ends it; returns the last version seen.
    async fn watch(&self, view: &ClusterView, mut version: String, timeout_secs: u64) -> Result<String, WatchError> {
        let path = format!(
            "/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds={timeout_secs}&resourceVersion={}",
            encode(&version)
        );
        let mut response = self.get(&path).await?;
        view.set_synced(true);
        PodWatchState { pods: view.pods(), synced: true }.emit();
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| WatchError::Http(format!("pod watch: {e}")))? {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if let Some(seen) = apply(view, &line)? {
                    version = seen;
                }
            }
            if buffer.len() > MAX_EVENT_BYTES {
                return Err(WatchError::Http(format!("pod watch: an event of over {MAX_EVENT_BYTES} bytes")));
            }
        }
        PodWatchState { pods: view.pods(), synced: true }.emit();
        Ok(version)
    }
}

/// Applies one watch event to the table; returns the resource version it carries.
fn apply(view: &ClusterView, line: &[u8]) -> Result<Option<String>, WatchError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let event: Value =
        serde_json::from_slice(line).map_err(|e| WatchError::Http(format!("pod watch: not a watch event: {e}")))?;
    let object = event.get("object").unwrap_or(&Value::Null);
    let version = object.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_owned);
    match event.get("type").and_then(Value::as_str) {
        Some("ADDED" | "MODIFIED") => {
            if let Some(pod) = pod_record(object) {
                view.upsert(pod);
            }
        }
        Some("DELETED") => {
            if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) {
                view.remove(uid);
            }
        }
        Some("BOOKMARK") => {}
        Some("ERROR") => {
            let code = object.get("code").and_then(Value::as_u64);
            let message = object.get("message").and_then(Value::as_str).unwrap_or_default();
            return Err(if code == Some(410) {
                WatchError::Expired
            } else {
                WatchError::Http(format!("pod watch error {code:?}: {message}"))
            });
        }
        other => return Err(WatchError::Http(format!("pod watch: unknown event type {other:?}"))),
    }
    Ok(version)
}

/// Percent-encodes a query value (resource versions and continue tokens are opaque strings).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Follows the API server's pods: built (and so checked: addresses, credential files) at start-up, so a bad
/// configuration fails it clearly, then run for as long as the stage runs.
pub struct PodWatcher {
    api: Api,
    page_size: u32,
    watch_timeout_secs: u64,
}

impl PodWatcher {
    pub fn new(config: &KubernetesConfig) -> Result<Self, WatchError> {
        Ok(Self { api: Api::new(config)?, page_size: config.page_size, watch_timeout_secs: config.watch_timeout_secs })
    }

    /// Keeps `view` equal to the API server's pods until the task is dropped: list, then watch, resumed or
    /// relisted as needed; failures back off and are counted, and meanwhile the view says it is not synced.
    pub async fn run(self, view: Arc<ClusterView>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let (pods, mut version) = match self.api.list(self.page_size).await {
                Ok(listed) => listed,
                Err(error) => {
                    failed(&view, &error, &mut backoff).await;
                    continue;
                }
            };
            view.replace(pods);
            tracing::info!(pods = view.pods(), "pod list loaded; watching");
            loop {
                match self.api.watch(&view, version.clone(), self.watch_timeout_secs).await {
                    Ok(last) => {
                        backoff = FIRST_BACKOFF;
                        version = last;
                        PodWatchRestarted { reason: "closed", error: None }.emit();
                    }
                    Err(WatchError::Expired) => {
                        PodWatchRestarted { reason: "expired", error: None }.emit();
                        break;
                    }
                    Err(error) => {
                        failed(&view, &error, &mut backoff).await;
                        // Events may have been missed while disconnected: relist.
                        break;
                    }
                }
            }
        }
    }
}

/// After a failed list or watch: the view is not synced any more, the failure is counted, and the next attempt
/// waits `backoff`, which doubles up to `MAX_BACKOFF`.
async fn failed(view: &ClusterView, error: &WatchError, backoff: &mut Duration) {
    view.set_synced(false);
    PodWatchState { pods: view.pods(), synced: false }.emit();
    PodWatchRestarted { reason: "error", error: Some(&error.to_string()) }.emit();
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_events_change_the_table_and_an_expired_version_is_recognised() {
        let view = ClusterView::new();
        let pod = |kind: &str, id: &str| {
            format!(
                r#"{{"type":"{kind}","object":{{"metadata":{{"uid":"u1","name":"web-1","namespace":"shop","resourceVersion":"{id}"}},
                "spec":{{"containers":[{{"name":"app","image":"shop/web:1"}}]}}}}}}"#
            )
            .replace('\n', "")
        };
        assert_eq!(apply(&view, pod("ADDED", "7").as_bytes()).unwrap().as_deref(), Some("7"));
        assert_eq!(view.pods(), 1);
        let bookmark = r#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9"}}}"#;
        assert_eq!(apply(&view, bookmark.as_bytes()).unwrap().as_deref(), Some("9"));
        assert_eq!(apply(&view, pod("DELETED", "10").as_bytes()).unwrap().as_deref(), Some("10"));
        assert_eq!(view.pods(), 0);
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version"}}"#;
        assert!(matches!(apply(&view, gone.as_bytes()), Err(WatchError::Expired)));
        assert!(matches!(apply(&view, b"{not json"), Err(WatchError::Http(_))));
        assert_eq!(apply(&view, b"\n").unwrap(), None);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("12345"), "12345");
        assert_eq!(encode("eyJ2Ijoi+/="), "eyJ2Ijoi%2B%2F%3D");
    }

    #[test]
    fn mismatched_client_credentials_and_missing_files_are_refused_at_start() {
        let config = KubernetesConfig {
            api_server: Some("https://127.0.0.1:1".into()),
            token_path: None,
            ca_path: None,
            client_cert_path: Some("/nonexistent.crt".into()),
            client_key_path: None,
            context_wait_ms: 0,
            max_waiting: 1,
            page_size: 1,
            watch_timeout_secs: 1,
        };
        assert!(matches!(PodWatcher::new(&config), Err(WatchError::Config(m)) if m.contains("go together")));
        let config = KubernetesConfig { client_cert_path: None, token_path: Some("/nonexistent".into()), ..config };
        assert!(
            matches!(PodWatcher::new(&config), Err(WatchError::Config(m)) if m.contains("token file /nonexistent"))
        );
    }
}
