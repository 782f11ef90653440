//! The events units read, and what they report back to the engine.

use std::collections::BTreeMap;

use palisade_schemas::{AuditEvent, CloudActivity, NodeEvent};

use super::meta::{Input, Source};

/// One decoded input event.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Node(&'a NodeEvent),
    Audit(&'a AuditEvent),
    Cloud(&'a CloudActivity),
}

impl Event<'_> {
    pub fn source(&self) -> Source {
        match self {
            Event::Node(_) => Source::Node,
            Event::Audit(_) => Source::Audit,
            Event::Cloud(_) => Source::Cloud,
        }
    }

    /// The input this event is, for routing it to the units that declare it.
    pub fn input(&self) -> Input {
        match self {
            Event::Node(node) => Input::Node(node.kind),
            Event::Audit(_) => Input::Audit,
            Event::Cloud(_) => Input::Cloud,
        }
    }

    /// The event's own time: what windows and baselines count in.
    pub fn time_ms(&self) -> i64 {
        match self {
            Event::Node(node) => node.timestamp_ms,
            Event::Audit(audit) => audit.stage_ms,
            Event::Cloud(cloud) => cloud.timestamp_ms,
        }
    }
}

/// What a detector reports; the engine adds everything the event itself says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finding {
    /// Distinguishes two findings of one type from one event (e.g. the container name); part of the alert ID.
    pub subject: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub workload: Option<String>,
    pub image: Option<String>,
    /// Detector findings shown to the analyst.
    pub details: BTreeMap<String, String>,
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
    pub labels: BTreeMap<String, String>,
}
