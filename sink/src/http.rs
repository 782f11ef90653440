//! What the HTTP outputs (the search index and the webhook) share: their retry delays and their custom CA.

use std::path::Path;
use std::time::Duration;

/// The delay before retry `attempt` (from 0): `initial_ms`, doubled at each attempt, at most `max_ms`.
pub(crate) fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    Duration::from_millis(initial_ms.saturating_mul(1 << attempt.min(16)).min(max_ms))
}

/// The PEM CA certificate in `path`, to trust besides the system roots; or why it cannot be used.
pub(crate) fn root_certificate(path: &Path) -> Result<reqwest::Certificate, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())
}
