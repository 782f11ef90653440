//! `palisade replay`: re-runs a range of an input topic (node events, audit events or cloud activity) through the
//! production configuration and a candidate one, in this process, and reports how the alerts differ: new (only
//! the candidate raises them), gone (only production does), suppressed (the candidate raises them but one of its
//! suppression rules holds them back) and changed severity, per alert type with examples. Nothing is written to
//! any topic and no consumer group moves. Both sides are computed from the same events, so the diff shows the
//! configuration change alone (rules enabled, severities, exceptions, lists, windows, baselines, suppressions);
//! deduplication is left out, as alert IDs are compared one by one.
//!
//! Given the alerts topic instead, it previews suppression rules against the alerts already raised: each alert
//! (its last update, by ID) is checked against both configurations' suppression rules as of now.

use std::collections::BTreeMap;

use palisade_detect::{Engine, Event};
use palisade_enrich::Enricher;
use palisade_runtime::kafka::{RangeBound, read_range};
use palisade_schemas::{Alert, AuditEvent, CloudActivity, Codec, NodeEvent};
use serde::Serialize;

use crate::PipelineError;
use crate::config::PalisadeConfig;

/// How many examples each alert type's diff keeps.
const EXAMPLES: usize = 3;

#[derive(Debug, Clone)]
pub struct ReplayRange {
    pub topic: String,
    pub from: Option<RangeBound>,
    pub to: Option<RangeBound>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeDiff {
    pub new: usize,
    pub gone: usize,
    pub severity_changed: usize,
    /// Alerts the candidate's suppression rules would hold back (production sends them).
    pub suppressed: usize,
    pub unchanged: usize,
    pub examples: Vec<String>,
}

impl TypeDiff {
    fn changed(&self) -> bool {
        self.new + self.gone + self.severity_changed + self.suppressed > 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub topic: String,
    pub events: u64,
    pub bad_events: u64,
    pub production_alerts: usize,
    pub candidate_alerts: usize,
    /// By alert type; only types that either side raised.
    pub by_type: BTreeMap<String, TypeDiff>,
}

impl ReplayReport {
    pub fn changed(&self) -> bool {
        self.by_type.values().any(TypeDiff::changed)
    }

    /// The human form: one line per alert type that changed, then its examples.
    pub fn render(&self) -> String {
        let mut out = format!(
            "replayed {} events from {} ({} undecodable): production {} alerts, candidate {} alerts\n",
            self.events, self.topic, self.bad_events, self.production_alerts, self.candidate_alerts
        );
        if !self.changed() {
            out.push_str("no difference\n");
            return out;
        }
        out.push_str(&format!(
            "{:<44} {:>6} {:>6} {:>10} {:>9} {:>10}\n",
            "alert type", "new", "gone", "suppressed", "severity", "unchanged"
        ));
        for (alert_type, diff) in self.by_type.iter().filter(|(_, d)| d.changed()) {
            out.push_str(&format!(
                "{alert_type:<44} {:>6} {:>6} {:>10} {:>9} {:>10}\n",
                diff.new, diff.gone, diff.suppressed, diff.severity_changed, diff.unchanged
            ));
            for example in &diff.examples {
                out.push_str(&format!("    {example}\n"));
            }
        }
        out
    }
}

struct Side {
    engine: Engine,
    enricher: Enricher,
    /// Alerts sent, by ID.
    alerts: BTreeMap<String, Alert>,
    /// Alerts held back, by ID, with the rule's name.
    suppressed: BTreeMap<String, String>,
    /// Wall-clock time suppression expiries are judged at: the start of the replay.
    now_ms: i64,
}

impl Side {
    fn new(config: &PalisadeConfig, now_ms: i64) -> Result<Self, PipelineError> {
        Ok(Self {
            engine: Engine::new(&config.detect)?,
            enricher: Enricher::new(&config.cluster, &config.enrich, &config.detect)?,
            alerts: BTreeMap::new(),
            suppressed: BTreeMap::new(),
            now_ms,
        })
    }

    fn process(&mut self, event: &Event<'_>, detected_at: i64) {
        for detection in self.engine.process(event, detected_at) {
            let alert = self.enricher.enrich(detection);
            if let Some(rule) = self.enricher.suppressed_by(&alert, self.now_ms) {
                self.suppressed.insert(alert.id.clone(), rule);
            } else {
                self.alerts.insert(alert.id.clone(), alert);
            }
        }
    }
}

fn describe(alert: &Alert) -> String {
    let mut parts = vec![alert.id.clone()];
    parts.extend([&alert.namespace, &alert.workload, &alert.user, &alert.node].into_iter().flatten().cloned());
    if let Some(process) = &alert.process {
        parts.push(process.executable.clone());
    }
    parts.join(" ")
}

enum Input {
    Node(Codec<NodeEvent>),
    Audit(Codec<AuditEvent>),
    Cloud(Codec<CloudActivity>),
}

fn entry<'a>(
    by_type: &'a mut BTreeMap<String, TypeDiff>,
    alert_type: &str,
    example: Option<String>,
) -> &'a mut TypeDiff {
    let diff = by_type.entry(alert_type.to_owned()).or_default();
    if let Some(example) = example
        && diff.examples.len() < EXAMPLES
    {
        diff.examples.push(example);
    }
    diff
}

/// An alert as the sink wrote it to the alerts topic: Avro (single-object encoding) or JSON.
fn decode_alert(codec: &Codec<Alert>, payload: &[u8]) -> Result<Alert, String> {
    if payload.starts_with(&[0xC3, 0x01]) {
        codec.decode(payload).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(payload).map_err(|e| e.to_string())
    }
}

/// The alerts-topic preview: which alerts each side's suppression rules hold back now.
fn preview_suppressions(
    production: &PalisadeConfig,
    candidate: &PalisadeConfig,
    range: &ReplayRange,
    now_ms: i64,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayReport, PipelineError> {
    let kafka = production.kafka.as_ref().ok_or_else(|| PipelineError::Replay {
        reason: "replay reads Kafka: the production configuration needs a [kafka] section".into(),
    })?;
    let codec = Codec::<Alert>::new()?;
    let mut report = ReplayReport { topic: range.topic.clone(), ..ReplayReport::default() };
    // Deduplication sends updates of one alert under its ID; the last one read is the alert.
    let mut alerts: BTreeMap<String, Alert> = BTreeMap::new();
    report.events = read_range(kafka, &range.topic, range.from, range.to, |message, read, total| {
        progress(read, total);
        match decode_alert(&codec, &message.payload) {
            Ok(alert) => {
                alerts.insert(alert.id.clone(), alert);
            }
            Err(_) => report.bad_events += 1,
        }
    })?;
    let enricher = |config: &PalisadeConfig| Enricher::new(&config.cluster, &config.enrich, &config.detect);
    let (before, after) = (enricher(production)?, enricher(candidate)?);
    for alert in alerts.values() {
        let (held_before, held_after) = (before.suppressed_by(alert, now_ms), after.suppressed_by(alert, now_ms));
        report.production_alerts += usize::from(held_before.is_none());
        report.candidate_alerts += usize::from(held_after.is_none());
        let by_type = &mut report.by_type;
        match (held_before, held_after) {
            (None, Some(rule)) => {
                let example = format!("suppressed by {rule}: {}", describe(alert));
                entry(by_type, &alert.alert_type, Some(example)).suppressed += 1;
            }
            (Some(rule), None) => {
                let example = format!("new (no longer suppressed by {rule}): {}", describe(alert));
                entry(by_type, &alert.alert_type, Some(example)).new += 1;
            }
            _ => entry(by_type, &alert.alert_type, None).unchanged += 1,
        }
    }
    Ok(report)
}

/// Replays `range` through both configurations. `progress` gets (events read, events in range).
pub fn replay(
    production: &PalisadeConfig,
    candidate: &PalisadeConfig,
    range: &ReplayRange,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayReport, PipelineError> {
    let kafka = production.kafka.as_ref().ok_or_else(|| PipelineError::Replay {
        reason: "replay reads Kafka: the production configuration needs a [kafka] section".into(),
    })?;
    let topics = &production.topics;
    let now_ms = crate::stages::now_ms();
    if range.topic == topics.alerts {
        return preview_suppressions(production, candidate, range, now_ms, progress);
    }
    let input = if range.topic == topics.node_events {
        Input::Node(Codec::new()?)
    } else if range.topic == topics.audit_events {
        Input::Audit(Codec::new()?)
    } else if range.topic == topics.cloud_activity {
        Input::Cloud(Codec::new()?)
    } else {
        return Err(PipelineError::Replay {
            reason: format!(
                "{} is not an input topic ({}, {} or {}) nor the alerts topic ({})",
                range.topic, topics.node_events, topics.audit_events, topics.cloud_activity, topics.alerts
            ),
        });
    };
    let mut sides = [Side::new(production, now_ms)?, Side::new(candidate, now_ms)?];
    let mut report = ReplayReport { topic: range.topic.clone(), ..ReplayReport::default() };
    let events = read_range(kafka, &range.topic, range.from, range.to, |message, read, total| {
        progress(read, total);
        // The event's own time stands for the detection time, so both sides give the same alert IDs and times.
        let at = message.timestamp_ms.unwrap_or_default();
        let ok = match &input {
            Input::Node(codec) => {
                codec.decode(&message.payload).map(|e| sides.iter_mut().for_each(|s| s.process(&Event::Node(&e), at)))
            }
            Input::Audit(codec) => {
                codec.decode(&message.payload).map(|e| sides.iter_mut().for_each(|s| s.process(&Event::Audit(&e), at)))
            }
            Input::Cloud(codec) => {
                codec.decode(&message.payload).map(|e| sides.iter_mut().for_each(|s| s.process(&Event::Cloud(&e), at)))
            }
        };
        if ok.is_err() {
            report.bad_events += 1;
        }
    })?;
    report.events = events;
    let [production_side, candidate_side] = sides;
    report.production_alerts = production_side.alerts.len();
    report.candidate_alerts = candidate_side.alerts.len();
    let by_type = &mut report.by_type;
    for (id, before) in &production_side.alerts {
        match candidate_side.alerts.get(id) {
            None => match candidate_side.suppressed.get(id) {
                Some(rule) => {
                    let example = format!("suppressed by {rule}: {}", describe(before));
                    entry(by_type, &before.alert_type, Some(example)).suppressed += 1;
                }
                None => entry(by_type, &before.alert_type, Some(format!("gone: {}", describe(before)))).gone += 1,
            },
            Some(after) if after.severity != before.severity => {
                let example = format!("severity {} → {}: {}", before.severity, after.severity, describe(after));
                entry(by_type, &before.alert_type, Some(example)).severity_changed += 1;
            }
            Some(_) => entry(by_type, &before.alert_type, None).unchanged += 1,
        }
    }
    for (id, after) in &candidate_side.alerts {
        if !production_side.alerts.contains_key(id) {
            entry(by_type, &after.alert_type, Some(format!("new: {}", describe(after)))).new += 1;
        }
    }
    Ok(report)
}
