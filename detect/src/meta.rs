//! Alert-type metadata: what every detector declares about itself, as a `const` value.

use serde::{Deserialize, Serialize};

use crate::catalogue::CATALOGUE;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertTypeMeta {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    pub tactics: &'static [&'static str],
    pub techniques: &'static [&'static str],
    pub source: Source,
    pub kind: DetectionKind,
    pub description: &'static str,
}

/// The catalogue entry for `id`.
pub fn lookup(id: &str) -> Option<&'static AlertTypeMeta> {
    CATALOGUE.iter().find(|meta| meta.id == id)
}

/// The catalogue entry for `id`, for detectors naming their own type; a typo fails the registry test.
pub(crate) const fn catalogue_entry(id: &str) -> &'static AlertTypeMeta {
    let mut index = 0;
    while index < CATALOGUE.len() {
        if const_str_eq(CATALOGUE[index].id, id) {
            return &CATALOGUE[index];
        }
        index += 1;
    }
    panic!("alert type is not in the catalogue");
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut index = 0;
    while index < a.len() {
        if a[index] != b[index] {
            return false;
        }
        index += 1;
    }
    true
}
