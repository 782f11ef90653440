//! Enrichment: turns a `Detection` into the `Alert` the SOC reads, adding the catalogue's title, severity,
//! tactics and ATT&CK techniques, the configured severity override, the cluster name, a remediation hint and
//! threat-intelligence verdicts, and decides whether a suppression rule holds it back. Kubernetes context of
//! node alerts comes from the detect stage's cluster-state table and, where configured, from enrich's own
//! list/watch of the API server's pods (`kubernetes`); fields that cannot be filled stay absent, never
//! invented, and are listed in `unknown_fields`.

pub mod dedup;
pub mod kubernetes;
pub mod suppression;
pub mod threat_intel;

use std::collections::BTreeMap;
use std::path::PathBuf;

use palisade_detect::config::CompiledException;
use palisade_detect::engine::exception_matches;
use palisade_detect::texts::{LOCALES, localized};
use palisade_detect::{DetectConfig, Severity, lookup};
use palisade_schemas::{Alert, Detection};
use serde::Deserialize;

use crate::suppression::{SuppressionRule, Suppressions};
use crate::threat_intel::{ThreatIntel, ThreatIntelList};

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Language of title, description and remediation: `en` or `ar`.
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Alerts of one type about one entity within this many seconds (event time) fold into one alert with a
    /// count; 0 turns deduplication off.
    #[serde(default = "default_dedup_window_secs")]
    pub dedup_window_secs: u64,
    /// How often folded counts are sent again (as an update of the same alert), in seconds.
    #[serde(default = "default_dedup_flush_secs")]
    pub dedup_flush_secs: u64,
    /// Threat-intelligence list files (`[[enrich.threat_intel]]`).
    #[serde(default)]
    pub threat_intel: Vec<ThreatIntelList>,
    /// Suppression rules in the configuration (`[[enrich.suppressions]]`).
    #[serde(default)]
    pub suppressions: Vec<SuppressionRule>,
    /// A TOML file of `[[suppression]]` rules, re-read when it changes (no restart needed).
    #[serde(default)]
    pub suppressions_path: Option<PathBuf>,
    /// How often the suppression file's modification time is checked, in seconds.
    #[serde(default = "default_suppressions_reload_secs")]
    pub suppressions_reload_secs: u64,
    /// List/watch of the API server's pods (`[enrich.kubernetes]`), for node alerts whose pod detect did not
    /// know; unset: no lookups, such alerts are sent with the missing fields marked unknown.
    #[serde(default)]
    pub kubernetes: Option<crate::kubernetes::KubernetesConfig>,
}

const fn default_suppressions_reload_secs() -> u64 {
    10
}

const fn default_dedup_window_secs() -> u64 {
    60
}

const fn default_dedup_flush_secs() -> u64 {
    5
}

fn default_locale() -> String {
    "en".to_owned()
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            locale: default_locale(),
            dedup_window_secs: default_dedup_window_secs(),
            dedup_flush_secs: default_dedup_flush_secs(),
            threat_intel: Vec::new(),
            suppressions: Vec::new(),
            suppressions_path: None,
            suppressions_reload_secs: default_suppressions_reload_secs(),
            kubernetes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnrichConfigError {
    #[error("enrich.threat_intel: {0}")]
    ThreatIntel(String),
    #[error("{0}")]
    Suppression(String),
    #[error("enrich.locale = {0:?}: alerts are written in \"en\" or \"ar\"")]
    Locale(String),
    #[error("{0}")]
    Detect(#[from] palisade_detect::config::DetectConfigError),
}

pub struct Enricher {
    cluster: String,
    locale: String,
    severity_overrides: BTreeMap<String, Severity>,
    threat_intel: ThreatIntel,
    suppressions: Suppressions,
    /// The detect rules' exceptions, for alerts whose pod context only enrich found (detect applied them to what
    /// it knew).
    exceptions: BTreeMap<String, Vec<CompiledException>>,
}

/// The Kubernetes context a node alert from a container should have; those it lacks are listed as unknown.
fn unknown_fields(alert: &Alert) -> Vec<String> {
    if alert.in_container != Some(true) {
        return Vec::new();
    }
    [("namespace", &alert.namespace), ("pod", &alert.pod), ("workload", &alert.workload), ("image", &alert.image)]
        .into_iter()
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// For a detection whose type the catalogue does not know (a newer detect than this enrich).
const DEFAULT_REMEDIATION: &str = "Review the evidence. If the activity is expected, add an exception for this alert \
type (namespace, workload, image, user, process path or command-line pattern, with a reason) in the detect \
configuration; otherwise isolate the workload and investigate.";

impl Enricher {
    pub fn new(cluster: &str, config: &EnrichConfig, detect: &DetectConfig) -> Result<Self, EnrichConfigError> {
        let severity_overrides =
            detect.rules.iter().filter_map(|(id, rule)| rule.severity.map(|s| (id.clone(), s))).collect();
        let locale = if config.locale.is_empty() { default_locale() } else { config.locale.clone() };
        if !LOCALES.contains(&locale.as_str()) {
            return Err(EnrichConfigError::Locale(locale));
        }
        let threat_intel = ThreatIntel::load(&config.threat_intel).map_err(EnrichConfigError::ThreatIntel)?;
        let suppressions = Suppressions::load(
            &config.suppressions,
            config.suppressions_path.as_deref(),
            config.suppressions_reload_secs,
        )
        .map_err(EnrichConfigError::Suppression)?;
        let exceptions = detect
            .validate()?
            .into_iter()
            .filter(|(_, rule)| !rule.exceptions.is_empty())
            .map(|(id, rule)| (id, rule.exceptions))
            .collect();
        Ok(Self { cluster: cluster.to_owned(), locale, severity_overrides, threat_intel, suppressions, exceptions })
    }

    /// The reason of the detect exception that covers `detection`, if one does. Detect applies exceptions before
    /// its detections leave it; this is for a detection enrich has since completed with pod context, so that an
    /// exception by namespace, workload or image still holds.
    pub fn excepted_by(&self, detection: &Detection) -> Option<&str> {
        self.exceptions
            .get(&detection.alert_type)?
            .iter()
            .find(|exception| exception_matches(exception, detection))
            .map(|exception| exception.exception.reason.as_str())
    }

    /// The name of the suppression rule that holds `alert` back at wall-clock time `now_ms`, if any.
    pub fn suppressed_by(&self, alert: &Alert, now_ms: i64) -> Option<String> {
        self.suppressions.suppressed_by(alert, now_ms)
    }

    pub fn enrich(&self, detection: Detection) -> Alert {
        let meta = lookup(&detection.alert_type);
        let severity = self
            .severity_overrides
            .get(&detection.alert_type)
            .copied()
            .or(meta.map(|m| m.severity))
            .unwrap_or(Severity::Medium);
        let texts = localized(&detection.alert_type, &self.locale);
        let mut alert = Alert {
            title: texts.map_or_else(|| detection.alert_type.clone(), |t| t.title.to_owned()),
            severity: severity.as_str().to_owned(),
            tactics: meta.map(|m| m.tactics.iter().map(|t| (*t).to_owned()).collect()).unwrap_or_default(),
            techniques: meta.map(|m| m.techniques.iter().map(|t| (*t).to_owned()).collect()).unwrap_or_default(),
            description: texts.map(|t| t.description.to_owned()).unwrap_or_default(),
            remediation: texts.map_or(DEFAULT_REMEDIATION, |t| t.remediation).to_owned(),
            locale: self.locale.clone(),
            count: 1,
            first_seen_ms: Some(detection.timestamp_ms),
            last_seen_ms: Some(detection.timestamp_ms),
            cluster: detection.cluster.or_else(|| Some(self.cluster.clone())),
            id: detection.id,
            alert_type: detection.alert_type,
            source: detection.source,
            timestamp_ms: detection.timestamp_ms,
            detected_at_ms: detection.detected_at_ms,
            node: detection.node,
            namespace: detection.namespace,
            pod: detection.pod,
            workload: detection.workload,
            container_id: detection.container_id,
            image: detection.image,
            in_container: detection.in_container,
            process: detection.process,
            user: detection.user,
            source_ip: detection.source_ip,
            evidence: detection.evidence,
            details: detection.details,
            threat_intel: Vec::new(),
            unknown_fields: Vec::new(),
            pod_labels: detection.pod_labels,
        };
        alert.threat_intel = self.threat_intel.verdicts(&alert);
        alert.unknown_fields = unknown_fields(&alert);
        alert
    }
}

#[cfg(test)]
mod tests {
    use palisade_detect::RuleConfig;

    use super::*;

    fn detection(alert_type: &str) -> Detection {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/detection.v1.json"))
                .unwrap();
        let mut detection: Detection = serde_json::from_str(&text).unwrap();
        detection.alert_type = alert_type.to_owned();
        detection.cluster = None;
        detection
    }

    #[test]
    fn catalogue_words_and_attack_are_added() {
        let alert = Enricher::new("prod", &EnrichConfig::default(), &DetectConfig::default())
            .unwrap()
            .enrich(detection("K8S_PrivilegedContainer"));
        assert_eq!(alert.title, "Privileged container created");
        assert_eq!(alert.severity, "Informational");
        assert_eq!(alert.tactics, ["Privilege Escalation"]);
        assert_eq!(alert.techniques, ["T1610", "T1611"]);
        assert_eq!(alert.cluster.as_deref(), Some("prod"));
        assert!(alert.remediation.contains("privileged"));
        assert_eq!(alert.count, 1);
    }

    #[test]
    fn configured_severity_overrides_the_catalogue() {
        let mut detect = DetectConfig::default();
        detect.rules.insert(
            "K8S_PrivilegedContainer".into(),
            RuleConfig { severity: Some(Severity::High), ..RuleConfig::default() },
        );
        let alert = Enricher::new("prod", &EnrichConfig::default(), &detect)
            .unwrap()
            .enrich(detection("K8S_PrivilegedContainer"));
        assert_eq!(alert.severity, "High");
    }

    #[test]
    fn the_arabic_locale_writes_arabic_texts_and_others_are_refused() {
        let config = EnrichConfig { locale: "ar".into(), ..EnrichConfig::default() };
        let alert =
            Enricher::new("prod", &config, &DetectConfig::default()).unwrap().enrich(detection("K8S_DeleteEvents"));
        assert_eq!(alert.locale, "ar");
        assert_eq!(alert.title, "حذف أحداث Kubernetes");
        assert!(alert.description.contains("أحداث") && alert.remediation.contains("الأحداث"));
        assert_eq!(alert.tactics, ["Defense Evasion"], "tactics stay ATT&CK names");
        let english = Enricher::new("prod", &EnrichConfig::default(), &DetectConfig::default())
            .unwrap()
            .enrich(detection("K8S_DeleteEvents"));
        assert!(english.remediation.starts_with("Find who deleted the events"));
        let french = EnrichConfig { locale: "fr".into(), ..EnrichConfig::default() };
        assert!(matches!(
            Enricher::new("prod", &french, &DetectConfig::default()),
            Err(EnrichConfigError::Locale(l)) if l == "fr"
        ));
    }

    #[test]
    fn a_detect_exception_covers_a_detection_once_enrich_knows_its_namespace() {
        let mut detect = DetectConfig::default();
        let exception = palisade_detect::Exception {
            namespace: Some("ci".into()),
            reason: "build agents open shells".into(),
            ..palisade_detect::Exception::default()
        };
        detect.rules.insert(
            "K8S.NODE_ReverseShell".into(),
            RuleConfig { exceptions: vec![exception], ..RuleConfig::default() },
        );
        let enricher = Enricher::new("prod", &EnrichConfig::default(), &detect).unwrap();
        let mut node = detection("K8S.NODE_ReverseShell");
        node.namespace = None;
        assert_eq!(enricher.excepted_by(&node), None);
        node.namespace = Some("ci".into());
        assert_eq!(enricher.excepted_by(&node), Some("build agents open shells"));
        node.alert_type = "K8S.NODE_Webshell".into();
        assert_eq!(enricher.excepted_by(&node), None, "the exception is of one alert type");
    }

    #[test]
    fn a_container_alert_without_pod_context_lists_what_is_unknown() {
        let enricher = Enricher::new("prod", &EnrichConfig::default(), &DetectConfig::default()).unwrap();
        let mut node = detection("K8S.NODE_ReverseShell");
        node.in_container = Some(true);
        node.namespace = None;
        node.pod = None;
        node.workload = None;
        node.image = None;
        assert_eq!(enricher.enrich(node.clone()).unknown_fields, ["namespace", "pod", "workload", "image"]);
        node.in_container = Some(false);
        assert!(enricher.enrich(node).unknown_fields.is_empty(), "a host process has no pod to know");
    }
}
