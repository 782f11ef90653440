//! K8S_DeleteEvents: Kubernetes Events (core or events.k8s.io) are deleted one by one or by collection, by an
//! identity other than the platform's own (namespace clean-up and garbage collection delete events too).

use crate::detectors::audit_object::{by_platform, succeeded};
use crate::engine::{Event, Finding, StatelessDetector};
use crate::meta::{AlertTypeMeta, catalogue_entry};

const META: &AlertTypeMeta = catalogue_entry("K8S_DeleteEvents");

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
