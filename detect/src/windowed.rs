//! What windowed units share: their window settings, the lateness check, the bound on the keys they hold, and
//! the checkpoint of state kept as one serde value. The trait is `crate::unit::WindowedDetector`.

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A unit's state as its checkpoint: the state's serde value (`snapshot` of a unit whose state is one value).
pub fn snapshot_of(state: &impl Serialize) -> Value {
    serde_json::to_value(state).unwrap_or_default()
}

/// Replaces `state` with a checkpoint's (`restore` of a unit whose state is one value); a checkpoint that does not
/// read leaves it as it was and says why.
pub fn restore_from<S: DeserializeOwned>(state: &mut S, saved: &Value) -> Result<(), String> {
    *state = S::deserialize(saved).map_err(|e| e.to_string())?;
    Ok(())
}

/// Window settings of the windowed match detectors (node windows, kube-hunter's discovery pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Recon commands that make a burst.
    #[serde(default = "default_recon_distinct")]
    pub recon_distinct_commands: usize,
    /// The burst's window, in seconds of event time.
    #[serde(default = "default_recon_window_secs")]
    pub recon_window_secs: u64,
    /// How long a downloaded file is remembered for K8S.NODE_LinuxBackdoorArtifact, in seconds of event time.
    #[serde(default = "default_download_window_secs")]
    pub download_window_secs: u64,
    /// Distinct kube-hunter discovery calls (of five) from one Python client that make its passive pattern.
    #[serde(default = "default_discovery_distinct")]
    pub discovery_distinct_calls: usize,
    /// The discovery pattern's window, in seconds of event time.
    #[serde(default = "default_discovery_window_secs")]
    pub discovery_window_secs: u64,
    /// Events older than the newest seen minus this are too late to open or extend a window.
    #[serde(default = "default_lateness_secs")]
    pub lateness_secs: u64,
    /// Most keys (containers, host sessions) held per detector; the least recently seen go first.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

const fn default_recon_distinct() -> usize {
    4
}
const fn default_recon_window_secs() -> u64 {
    60
}
const fn default_download_window_secs() -> u64 {
    3600
}
const fn default_discovery_distinct() -> usize {
    4
}
const fn default_discovery_window_secs() -> u64 {
    60
}
const fn default_lateness_secs() -> u64 {
    30
}
const fn default_max_keys() -> usize {
    100_000
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            recon_distinct_commands: default_recon_distinct(),
            recon_window_secs: default_recon_window_secs(),
            download_window_secs: default_download_window_secs(),
            discovery_distinct_calls: default_discovery_distinct(),
            discovery_window_secs: default_discovery_window_secs(),
            lateness_secs: default_lateness_secs(),
            max_keys: default_max_keys(),
        }
    }
}

/// Evicts the key seen longest ago when the map is full.
pub(crate) fn make_room<T>(map: &mut HashMap<String, T>, max_keys: usize, last_ms: impl Fn(&T) -> i64) {
    while map.len() >= max_keys.max(1) {
        let Some(oldest) = map.iter().min_by_key(|(_, state)| last_ms(state)).map(|(k, _)| k.clone()) else { break };
        map.remove(&oldest);
    }
}

/// Advances the watermark; `false` when the event is later than the lateness bound allows.
pub(crate) fn on_time(watermark_ms: &mut i64, event_ms: i64, lateness_secs: u64) -> bool {
    *watermark_ms = (*watermark_ms).max(event_ms);
    event_ms >= *watermark_ms - lateness_secs as i64 * 1000
}
