//! Windowed detectors: keyed state over event time, with bounded lateness. The engine feeds them events and an
//! injected clock (the time a detection is made); their state is a serialisable snapshot, so a detector that is
//! stopped and restored resumes its open windows.

use std::collections::HashMap;

use serde_json::Value;

use crate::engine::{Event, Finding};
use crate::meta::AlertTypeMeta;

pub trait WindowedDetector: Send {
    fn meta(&self) -> &'static AlertTypeMeta;
    /// Findings this event completes.
    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding>;

    /// Every alert type this detector raises (a join over one table may raise several).
    fn metas(&self) -> Vec<&'static AlertTypeMeta> {
        vec![self.meta()]
    }

    /// Findings with the alert type each is of. The engine checks each type's rule (enabled, exceptions) after.
    fn observe_all(&mut self, event: &Event<'_>) -> Vec<(&'static AlertTypeMeta, Finding)> {
        let meta = self.meta();
        self.observe(event).into_iter().map(|finding| (meta, finding)).collect()
    }

    /// Findings, given the pod the event ran in when the engine knows it (node events of a pod the cluster-state
    /// table holds). Detectors keyed by workload use it; the others ignore it.
    fn observe_in(
        &mut self,
        event: &Event<'_>,
        _context: Option<&PodContext>,
    ) -> Vec<(&'static AlertTypeMeta, Finding)> {
        self.observe_all(event)
    }

    /// The pod a node event's pod UID names, when this detector keeps a table of pods (the cluster-state join).
    fn pod_context(&self, _pod_uid: &str) -> Option<PodContext> {
        None
    }

    /// For a baseline: how many keys are learning and how many are past their learning period.
    fn learning(&self) -> Option<crate::baseline::LearningState> {
        None
    }
    /// Drops state that no event inside the lateness bound can extend any more.
    fn expire(&mut self, now_ms: i64);
    fn snapshot(&self) -> Value;
    fn restore(&mut self, state: &Value) -> Result<(), String>;
    /// Keys held, for the memory figures.
    fn keys(&self) -> usize;

    /// Events ignored so far for arriving later than the lateness bound allows.
    fn late_events(&self) -> u64 {
        0
    }
}

/// Where a pod runs in the cluster, for node alerts (their events carry only the pod UID, from the cgroup path).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PodContext {
    pub namespace: String,
    pub pod: String,
    /// `Kind/name` of the pod's controller (its first owner reference), else `Pod/<name>`.
    pub workload: String,
    /// The image, when the pod has one container (a node event does not say which container it came from).
    pub image: Option<String>,
    /// The pod's labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
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
