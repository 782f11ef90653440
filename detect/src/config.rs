//! Per-alert-type configuration: enable or disable, re-rate, and except (by namespace, workload, image, user,
//! process path or command-line pattern, each exception with its reason). Validation is pure and returns typed
//! errors; compiling the patterns happens there too, so a running engine never meets a bad regex.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use crate::catalogue::lookup;
use crate::unit::Severity;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Settings per alert type ID (`K8S_PrivilegedContainer`, `K8S.NODE_EICAR`, ...). Types not listed run with
    /// their defaults.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleConfig>,
    /// Proxy/anonymiser address list for K8S_TI_Proxy (addresses or CIDRs, one per line); absent = the shipped
    /// list. Re-read when the file changes.
    #[serde(default)]
    pub proxy_list_path: Option<std::path::PathBuf>,
    /// How often the list file is checked for changes, in seconds.
    #[serde(default = "default_proxy_list_reload_secs")]
    pub proxy_list_reload_secs: u64,
    /// Directory whose list files (`miner_binaries.txt`, `attack_tools.txt`, ... as shipped in `detect/data/node/`)
    /// replace the shipped node lists of the same name; absent = the shipped lists. Re-read when a file changes.
    #[serde(default)]
    pub node_lists_dir: Option<std::path::PathBuf>,
    /// How often the node list directory is checked for changes, in seconds.
    #[serde(default = "default_proxy_list_reload_secs")]
    pub node_lists_reload_secs: u64,
    /// Directory whose list files (`miner_images.txt`, `sensitive_host_paths.txt`, `kube_system_workloads.txt`, as
    /// shipped in `detect/data/`) replace the control-plane units' lists of the same name; absent = the shipped
    /// lists. Re-read when a file changes.
    #[serde(default)]
    pub lists_dir: Option<std::path::PathBuf>,
    /// How often that directory is checked for changes, in seconds.
    #[serde(default = "default_proxy_list_reload_secs")]
    pub lists_reload_secs: u64,
    /// Windows of the windowed node detectors (recon burst, download then run).
    #[serde(default)]
    pub windows: crate::windowed::WindowConfig,
    /// Learning of the baselines (service accounts, kube-system workloads, cloud identities).
    #[serde(default)]
    pub baselines: crate::detectors::baselines::BaselinesConfig,
    /// File the windowed detectors' state is checkpointed to (and restored from at start); absent = not kept
    /// across restarts. Not used with `kafka_state`.
    #[serde(default)]
    pub state_path: Option<std::path::PathBuf>,
    /// How often the state is checkpointed, in seconds (and always at shutdown).
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// With Kafka: keep the windowed state per input partition in the `topics.detect_changelog` topic instead of
    /// `state_path`, so several detect instances may share the input topics and a moved one loses nothing.
    /// Opt-in while a stall seen on the test cluster after a redeploy is not understood (README).
    #[serde(default)]
    pub kafka_state: bool,
    /// With `kafka_state`: how often a transaction sends the detections, writes the changed state to the changelog topic
    /// and commits the inputs, in milliseconds (also the most a detection waits to be sent).
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// With `kafka_state`: `transactional.id` of this detect instance; absent = `palisade-detect-<hostname>` (unique per
    /// pod, stable across its restarts, which is what fences a dead instance's open transaction).
    #[serde(default)]
    pub transactional_id: Option<String>,
}

const fn default_commit_interval_ms() -> u64 {
    1000
}

const fn default_checkpoint_secs() -> u64 {
    5
}

const fn default_proxy_list_reload_secs() -> u64 {
    10
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            rules: BTreeMap::new(),
            proxy_list_path: None,
            proxy_list_reload_secs: default_proxy_list_reload_secs(),
            node_lists_dir: None,
            node_lists_reload_secs: default_proxy_list_reload_secs(),
            lists_dir: None,
            lists_reload_secs: default_proxy_list_reload_secs(),
            windows: crate::windowed::WindowConfig::default(),
            baselines: crate::detectors::baselines::BaselinesConfig::default(),
            state_path: None,
            checkpoint_secs: default_checkpoint_secs(),
            kafka_state: false,
            commit_interval_ms: default_commit_interval_ms(),
            transactional_id: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Whether the alert type is raised at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Severity to report instead of the catalogue's.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Cases that must not raise this alert type.
    #[serde(default)]
    pub exceptions: Vec<Exception>,
}

const fn default_enabled() -> bool {
    true
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self { enabled: true, severity: None, exceptions: Vec::new() }
    }
}

/// Every field given must match (they combine with AND); at least one must be given.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// Kubernetes namespace, exact.
    pub namespace: Option<String>,
    /// Workload as `Kind/name`, exact.
    pub workload: Option<String>,
    /// Container image; a trailing `*` matches any suffix (tag or digest).
    pub image: Option<String>,
    /// Kubernetes user (audit alerts), exact.
    pub user: Option<String>,
    /// Executable path (node alerts), exact.
    pub process_path: Option<String>,
    /// Regular expression matched against the command line (arguments joined by spaces).
    pub command_line_pattern: Option<String>,
    /// Why this case is expected; required so every exception can be reviewed.
    pub reason: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DetectConfigError {
    #[error("detect.rules.\"{0}\": no such alert type; `palisade catalogue` lists the IDs")]
    UnknownAlertType(String),
    #[error(
        "detect.rules.\"{rule}\".exceptions[{index}]: no field to match on; give at least one of namespace, workload, image, user, process_path, command_line_pattern"
    )]
    EmptyException { rule: String, index: usize },
    #[error("detect.rules.\"{rule}\".exceptions[{index}]: `reason` is empty; say why this case is expected")]
    MissingReason { rule: String, index: usize },
    #[error("detect list: {0}")]
    List(String),
    #[error("detect.rules.\"{rule}\".exceptions[{index}].command_line_pattern: {error}")]
    BadPattern { rule: String, index: usize, error: String },
}

/// An exception ready to match.
#[derive(Debug, Clone)]
pub struct CompiledException {
    pub exception: Exception,
    pub command_line: Option<Regex>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub enabled: bool,
    pub severity: Option<Severity>,
    pub exceptions: Vec<CompiledException>,
}

impl DetectConfig {
    pub fn validate(&self) -> Result<BTreeMap<String, CompiledRule>, DetectConfigError> {
        let mut compiled = BTreeMap::new();
        for (rule, config) in &self.rules {
            if lookup(rule).is_none() {
                return Err(DetectConfigError::UnknownAlertType(rule.clone()));
            }
            let mut exceptions = Vec::with_capacity(config.exceptions.len());
            for (index, exception) in config.exceptions.iter().enumerate() {
                let has_matcher = exception.namespace.is_some()
                    || exception.workload.is_some()
                    || exception.image.is_some()
                    || exception.user.is_some()
                    || exception.process_path.is_some()
                    || exception.command_line_pattern.is_some();
                if !has_matcher {
                    return Err(DetectConfigError::EmptyException { rule: rule.clone(), index });
                }
                if exception.reason.trim().is_empty() {
                    return Err(DetectConfigError::MissingReason { rule: rule.clone(), index });
                }
                let command_line =
                    exception.command_line_pattern.as_deref().map(Regex::new).transpose().map_err(|error| {
                        DetectConfigError::BadPattern { rule: rule.clone(), index, error: error.to_string() }
                    })?;
                exceptions.push(CompiledException { exception: exception.clone(), command_line });
            }
            compiled
                .insert(rule.clone(), CompiledRule { enabled: config.enabled, severity: config.severity, exceptions });
        }
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_with(exception: Exception) -> DetectConfig {
        let mut rules = BTreeMap::new();
        rules.insert(
            "K8S_PrivilegedContainer".to_owned(),
            RuleConfig { exceptions: vec![exception], ..RuleConfig::default() },
        );
        DetectConfig { rules, ..DetectConfig::default() }
    }

    #[test]
    fn unknown_alert_type_is_named() {
        let mut rules = BTreeMap::new();
        rules.insert("K8S_Nope".to_owned(), RuleConfig::default());
        assert_eq!(
            DetectConfig { rules, ..DetectConfig::default() }.validate().unwrap_err(),
            DetectConfigError::UnknownAlertType("K8S_Nope".into())
        );
    }

    #[test]
    fn exceptions_need_a_matcher_a_reason_and_a_valid_pattern() {
        let empty = rule_with(Exception { reason: "x".into(), ..Exception::default() });
        assert!(matches!(empty.validate(), Err(DetectConfigError::EmptyException { index: 0, .. })));
        let no_reason = rule_with(Exception { namespace: Some("ns".into()), ..Exception::default() });
        assert!(matches!(no_reason.validate(), Err(DetectConfigError::MissingReason { .. })));
        let bad =
            rule_with(Exception { command_line_pattern: Some("(".into()), reason: "x".into(), ..Exception::default() });
        assert!(matches!(bad.validate(), Err(DetectConfigError::BadPattern { .. })));
        let good = rule_with(Exception { namespace: Some("ns".into()), reason: "ok".into(), ..Exception::default() });
        assert_eq!(good.validate().unwrap()["K8S_PrivilegedContainer"].exceptions.len(), 1);
    }
}
