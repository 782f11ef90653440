//! K8S_DeleteEvents: Kubernetes Events (core or events.k8s.io) are deleted one by one or by collection, by an
//! identity other than the platform's own (namespace clean-up and garbage collection delete events too).

use crate::detectors::audit_object::{by_platform, succeeded};
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

pub const META: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_DeleteEvents",
    title: "Kubernetes events deleted",
    severity: Severity::Low,
    tactics: &["Defense Evasion"],
    techniques: &["T1070"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when Kubernetes Event objects are deleted (delete or deletecollection on events, core or events.k8s.io) by a non-system identity.",
    false_positives: "namespace clean-up by the namespace controller (a platform identity, left out); people tidying up by hand. Except by `user`.",
    audit_level: Some("Metadata"),
    learned: None,
    windowed: None,
    unit: file!(),
};

pub struct DeleteEvents;

impl StatelessDetector for DeleteEvents {
    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        let verbs = ["delete", "deletecollection"];
        let deleted =
            succeeded(audit, &verbs, "", &["events"]) || succeeded(audit, &verbs, "events.k8s.io", &["events"]);
        if !deleted || by_platform(audit) {
            return Vec::new();
        }
        let mut finding = Finding::default();
        finding.details.insert("verb".into(), audit.verb.clone());
        if let Some(name) = &audit.name {
            finding.details.insert("event".into(), name.clone());
        }
        vec![finding]
    }
}
