//! K8S.NODE_EICAR: the harmless test trigger. `palisade test-alert` runs a copy of /bin/true named
//! `palisade_alerttest_5f3c9e`; Microsoft's documented trigger name (`asc_alerttest_662jfi039n`) and the EICAR
//! test string in the arguments are recognised too, so existing runbooks work.

use crate::detectors::node_runtime::false_positives::ADMIN_TOOLING;
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};
use palisade_schemas::NodeEventKind;

pub const META: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S.NODE_EICAR",
    title: "Palisade test alert (not a threat)",
    severity: Severity::High,
    tactics: &["Execution"],
    techniques: &["T1204"],
    source: Source::Node,
    kind: DetectionKind::Match,
    inputs: &[Input::Node(NodeEventKind::Exec)],
    maturity: Maturity::Stable,
    description: "Fires when the product's own harmless test trigger (documented command, e.g. an executable with a fixed test name or the EICAR test string in argv) — used to check the whole pipeline end to end.",
    false_positives: ADMIN_TOOLING,
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

/// The executable name `palisade test-alert` runs.
pub const TEST_TRIGGER_NAME: &str = "palisade_alerttest_5f3c9e";
const KNOWN_TRIGGER_NAMES: [&str; 2] = [TEST_TRIGGER_NAME, "asc_alerttest_662jfi039n"];
const EICAR: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

pub struct Eicar;

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl StatelessDetector for Eicar {
    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Node(node) = event else {
            return Vec::new();
        };
        if node.kind != NodeEventKind::Exec {
            return Vec::new();
        }
        let executable = node.executable.as_deref().map(basename);
        let argv0 = node.argv.first().map(|a| basename(a));
        let by_name = [executable, argv0].into_iter().flatten().find(|name| KNOWN_TRIGGER_NAMES.contains(name));
        let by_string = node.argv.iter().any(|arg| arg.contains(EICAR));
        if by_name.is_none() && !by_string {
            return Vec::new();
        }
        let mut finding = Finding::default();
        finding.details.insert(
            "trigger".into(),
            by_name.map_or_else(|| "EICAR test string in arguments".to_owned(), |name| format!("executable {name}")),
        );
        vec![finding]
    }
}
