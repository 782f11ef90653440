//! The engine: runs every enabled detector over one event, turns findings into `Detection` records with
//! deterministic IDs and verbatim evidence, and applies the configured exceptions.

use std::collections::BTreeMap;
use std::sync::Mutex;

use palisade_schemas::{Detection, EvidenceSource, NodeEvent, ProcessInfo};
use sha2::{Digest, Sha256};

use crate::config::{CompiledException, CompiledRule, DetectConfig, DetectConfigError};
use crate::registry;
use crate::unit::{
    AlertTypeMeta, Event, Finding, Input, LearningState, PodContext, StatelessDetector, WindowedDetector,
};

/// Events between two expiries of the windows' state.
pub const EXPIRE_EVERY_EVENTS: u64 = 4096;

struct Windows {
    detectors: Vec<Box<dyn WindowedDetector>>,
    /// Newest event time seen: the clock the windows expire by.
    watermark_ms: i64,
    since_expiry: u64,
}

pub struct Engine {
    detectors: Vec<Box<dyn StatelessDetector>>,
    windows: Mutex<Windows>,
    rules: BTreeMap<String, CompiledRule>,
    /// By `Input::index`: the stateless and the windowed detectors that declare that input, in registry order.
    routes: Vec<Routes>,
}

#[derive(Debug, Clone, Default)]
struct Routes {
    stateless: Vec<usize>,
    windowed: Vec<usize>,
}

const NO_ROUTES: &Routes = &Routes { stateless: Vec::new(), windowed: Vec::new() };

/// By `Input::index`: the detectors (indexes into `metas`) whose alert types declare that input.
fn route(metas: impl Iterator<Item = Vec<&'static AlertTypeMeta>>) -> Vec<Vec<usize>> {
    let mut routes = vec![Vec::new(); Input::COUNT];
    for (detector, metas) in metas.enumerate() {
        let mut inputs: Vec<usize> = metas.iter().flat_map(|meta| meta.inputs).map(|input| input.index()).collect();
        inputs.sort_unstable();
        inputs.dedup();
        inputs.into_iter().for_each(|input| routes[input].push(detector));
    }
    routes
}

impl Engine {
    /// Every registered detector, configured by `config`.
    pub fn new(config: &DetectConfig) -> Result<Self, DetectConfigError> {
        Self::with_units(config, registry::detectors(config)?)
    }

    /// These units, with the rules (enabled, exceptions) of `config`.
    pub fn with_units(config: &DetectConfig, registered: registry::Registered) -> Result<Self, DetectConfigError> {
        let rules = config.validate()?;
        let stateless = route(registered.stateless.iter().map(|detector| detector.metas()));
        let windowed = route(registered.windowed.iter().map(|detector| detector.metas()));
        let routes = stateless.into_iter().zip(windowed).map(|(stateless, windowed)| Routes { stateless, windowed });
        let routes = routes.collect();
        let windows = Windows { detectors: registered.windowed, watermark_ms: 0, since_expiry: 0 };
        Ok(Self { detectors: registered.stateless, windows: Mutex::new(windows), rules, routes })
    }

    /// The configured rule of an alert type, or `None` when it is disabled.
    fn rule(&self, meta: &AlertTypeMeta) -> Option<Option<&CompiledRule>> {
        let rule = self.rules.get(meta.id);
        if rule.is_some_and(|rule| !rule.enabled) { None } else { Some(rule) }
    }

    fn keep(
        out: &mut Vec<Detection>,
        rule: Option<&CompiledRule>,
        meta: &AlertTypeMeta,
        (event, context): (&Event<'_>, Option<&PodContext>),
        finding: Finding,
        detected_at_ms: i64,
    ) {
        let mut detection = build_detection(meta, event, finding, detected_at_ms);
        // A node alert gets the pod its event ran in, before exceptions (by namespace, workload, image) apply.
        if let Some(context) = context {
            detection.namespace = detection.namespace.or_else(|| Some(context.namespace.clone()));
            detection.pod = detection.pod.or_else(|| Some(context.pod.clone()));
            detection.workload = detection.workload.or_else(|| Some(context.workload.clone()));
            detection.image = detection.image.or_else(|| context.image.clone());
            if detection.pod_labels.is_empty() {
                detection.pod_labels.clone_from(&context.labels);
            }
        }
        let excepted = rule.is_some_and(|rule| rule.exceptions.iter().any(|e| exception_matches(e, &detection)));
        if !excepted {
            out.push(detection);
        }
    }

    pub fn process(&self, event: &Event<'_>, detected_at_ms: i64) -> Vec<Detection> {
        let mut out = Vec::new();
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let context = match event {
            Event::Node(NodeEvent { pod_uid: Some(uid), .. }) => {
                windows.detectors.iter().find_map(|detector| detector.pod_context(uid))
            }
            _ => None,
        };
        let with = (event, context.as_ref());
        // A kind this build does not route (none, while `NodeEventKind::ALL` is complete) reaches no unit.
        let routes = self.routes.get(event.input().index()).unwrap_or(NO_ROUTES);
        for detector in routes.stateless.iter().map(|&index| &self.detectors[index]) {
            for (meta, finding) in detector.detect_all(event) {
                let Some(rule) = self.rule(meta) else { continue };
                Self::keep(&mut out, rule, meta, with, finding, detected_at_ms);
            }
        }
        windows.watermark_ms = windows.watermark_ms.max(event.time_ms());
        for &index in &routes.windowed {
            let detector = &mut windows.detectors[index];
            for (meta, finding) in detector.observe_in(event, context.as_ref()) {
                let Some(rule) = self.rule(meta) else { continue };
                Self::keep(&mut out, rule, meta, with, finding, detected_at_ms);
            }
        }
        windows.since_expiry += 1;
        if windows.since_expiry >= EXPIRE_EVERY_EVENTS {
            windows.since_expiry = 0;
            let now = windows.watermark_ms;
            windows.detectors.iter_mut().for_each(|detector| detector.expire(now));
        }
        out
    }

    /// The windowed detectors' state, by alert type, for a checkpoint.
    pub fn window_state(&self) -> serde_json::Value {
        let windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut state = serde_json::Map::new();
        state.insert("watermark_ms".into(), windows.watermark_ms.into());
        for detector in &windows.detectors {
            state.insert(detector.checkpoint_key().into(), detector.snapshot());
        }
        serde_json::Value::Object(state)
    }

    /// Restores what `window_state` returned; detectors absent from it start empty.
    pub fn restore_window_state(&self, state: &serde_json::Value) -> Result<(), String> {
        let mut windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        windows.watermark_ms = state.get("watermark_ms").and_then(serde_json::Value::as_i64).unwrap_or_default();
        for detector in &mut windows.detectors {
            let key = detector.checkpoint_key();
            if let Some(saved) = state.get(key) {
                detector.restore(saved).map_err(|e| format!("{key}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Each baseline's learning state, by alert type.
    pub fn learning_states(&self) -> Vec<(&'static str, LearningState)> {
        let windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        windows.detectors.iter().filter_map(|d| d.learning().map(|state| (d.meta().id, state))).collect()
    }

    /// Events each windowed detector ignored as late, since it started (or was restored).
    pub fn late_events(&self) -> Vec<(&'static str, u64)> {
        let windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        windows.detectors.iter().map(|d| (d.meta().id, d.late_events())).filter(|(_, late)| *late > 0).collect()
    }

    /// Keys held by each windowed detector.
    pub fn window_keys(&self) -> Vec<(&'static str, usize)> {
        let windows = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        windows.detectors.iter().map(|d| (d.meta().id, d.keys())).collect()
    }
}

/// Whether a rule's exception covers the detection (every field it names matches).
pub fn exception_matches(compiled: &CompiledException, detection: &Detection) -> bool {
    let exception = &compiled.exception;
    let exact = |wanted: &Option<String>, actual: &Option<String>| match wanted {
        None => true,
        Some(wanted) => actual.as_deref() == Some(wanted.as_str()),
    };
    let image_ok = match &exception.image {
        None => true,
        Some(pattern) => detection.image.as_deref().is_some_and(|image| match pattern.strip_suffix('*') {
            Some(prefix) => image.starts_with(prefix),
            None => image == pattern,
        }),
    };
    let process_ok = match &exception.process_path {
        None => true,
        Some(path) => detection.process.as_ref().is_some_and(|p| &p.executable == path),
    };
    let command_ok = match &compiled.command_line {
        None => true,
        Some(pattern) => detection.process.as_ref().is_some_and(|p| pattern.is_match(&p.args.join(" "))),
    };
    exact(&exception.namespace, &detection.namespace)
        && exact(&exception.workload, &detection.workload)
        && exact(&exception.user, &detection.user)
        && image_ok
        && process_ok
        && command_ok
}

/// A stable ID: the same alert type, evidence event and subject always give the same ID, so a replay or a
/// redelivery overwrites instead of duplicating.
pub fn detection_id(alert_type: &str, event_id: &str, subject: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [alert_type, event_id, subject] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..16])
}

fn build_detection(meta: &AlertTypeMeta, event: &Event<'_>, finding: Finding, detected_at_ms: i64) -> Detection {
    let mut detection = Detection {
        id: String::new(),
        alert_type: meta.id.to_owned(),
        source: EvidenceSource::Audit,
        timestamp_ms: 0,
        detected_at_ms,
        cluster: None,
        node: None,
        namespace: finding.namespace,
        pod: finding.pod,
        workload: finding.workload,
        container_id: None,
        image: finding.image,
        in_container: None,
        process: None,
        user: None,
        source_ip: None,
        evidence: Vec::new(),
        details: finding.details,
        pod_uid: None,
        pod_labels: BTreeMap::new(),
    };
    let event_id = match event {
        Event::Audit(audit) => {
            detection.source = EvidenceSource::Audit;
            detection.timestamp_ms = audit.stage_ms;
            detection.cluster = Some(audit.cluster.clone());
            detection.namespace = detection.namespace.or_else(|| audit.namespace.clone());
            detection.user = Some(audit.username.clone());
            detection.source_ip = audit.source_ips.first().cloned();
            detection.evidence.push(audit.raw.clone());
            audit.audit_id.as_str()
        }
        Event::Node(node) => {
            detection.source = EvidenceSource::Node;
            detection.timestamp_ms = node.timestamp_ms;
            detection.node = Some(node.node.clone());
            detection.container_id = node.container_id.clone();
            detection.pod_uid = node.pod_uid.clone();
            // What the node's CRI runtime said of the container; the exact container's image, so it goes before
            // the cluster-state table's (which knows the image of one-container pods only).
            detection.namespace = detection.namespace.or_else(|| node.pod_namespace.clone());
            detection.pod = detection.pod.or_else(|| node.pod_name.clone());
            detection.image = detection.image.or_else(|| node.image.clone());
            detection.in_container = Some(node.in_container);
            detection.process = Some(ProcessInfo {
                pid: node.tgid,
                ppid: node.ppid,
                executable: node.executable.clone().unwrap_or_else(|| node.comm.clone()),
                args: node.argv.clone(),
                user: Some(node.uid.to_string()),
                parent_chain: node.ancestry.iter().map(|p| p.executable.clone()).collect(),
            });
            detection.evidence.push(serde_json::to_string(node).unwrap_or_default());
            node.event_id.as_str()
        }
        Event::Cloud(cloud) => {
            detection.source = EvidenceSource::Cloud;
            detection.timestamp_ms = cloud.timestamp_ms;
            detection.user = Some(cloud.identity.clone());
            detection.source_ip = cloud.caller_ip.clone();
            detection.evidence.push(cloud.raw.clone());
            cloud.id.as_str()
        }
    };
    detection.id = detection_id(meta.id, event_id, &finding.subject);
    detection
}

#[cfg(test)]
mod tests;
