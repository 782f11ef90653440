//! Alert-type metadata: what every unit declares about itself, as a `const` beside its code.

use palisade_schemas::NodeEventKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    High,
    Medium,
    Low,
    Informational,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::High => "High",
            Severity::Medium => "Medium",
            Severity::Low => "Low",
            Severity::Informational => "Informational",
        }
    }
}

/// Where the evidence of an alert type comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    Audit,
    Node,
    Cloud,
}

/// How an alert type is decided (the catalogue's "kind" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DetectionKind {
    /// One event decides.
    Match,
    /// One event plus cluster state.
    Join,
    /// Several events of one key inside a time window.
    Window,
    /// Learned normal behaviour per key, then the unusual.
    Baseline,
}

/// The events a unit reads. The engine gives a unit only these, so what it declares is what it can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Input {
    /// Kubernetes audit events.
    Audit,
    /// Cloud activity-log records.
    Cloud,
    /// Node events of one kind.
    Node(NodeEventKind),
}

impl Input {
    /// How many inputs there are: `index` is below it.
    pub const COUNT: usize = 2 + NodeEventKind::ALL.len();

    /// A dense index, for routing tables.
    pub const fn index(self) -> usize {
        match self {
            Input::Audit => 0,
            Input::Cloud => 1,
            Input::Node(kind) => 2 + kind as usize,
        }
    }

    pub const fn source(self) -> Source {
        match self {
            Input::Audit => Source::Audit,
            Input::Cloud => Source::Cloud,
            Input::Node(_) => Source::Node,
        }
    }
}

/// How far an alert type has been proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Maturity {
    /// Raised end to end in the test suite from real components (kernel, API server).
    Stable,
    /// Tested on recorded or synthetic input only: the real source cannot run here.
    Experimental,
}

/// The audit-policy level most audit types need (`audit_level`): the objects they read, logged with their bodies.
pub const REQUEST_RESPONSE_ON_OBJECTS: &str = "RequestResponse on the objects it reads";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertTypeMeta {
    pub id: &'static str,
    /// The English title; `texts` holds the other languages under the same ID.
    pub title: &'static str,
    pub severity: Severity,
    pub tactics: &'static [&'static str],
    pub techniques: &'static [&'static str],
    pub source: Source,
    pub kind: DetectionKind,
    /// The events the unit reads; the engine routes only these to it.
    pub inputs: &'static [Input],
    pub maturity: Maturity,
    pub description: &'static str,
    /// Who raises it without attacking, and the exception that fits them.
    pub false_positives: &'static str,
    /// For audit types: the audit-policy level the type needs on the objects it reads.
    pub audit_level: Option<&'static str>,
    /// For a match type with a learned half beside its rule: what the half learns and where it is configured.
    pub learned: Option<&'static str>,
    /// For a match type with a windowed half beside its rule: what the half follows across events.
    pub windowed: Option<&'static str>,
    /// The source file that declares it (`file!()`), for `palisade catalogue` and `docs/alerts.md`.
    pub unit: &'static str,
}
