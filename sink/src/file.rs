//! The JSON-lines alerts file and the one-line rendering for a person at a terminal.

use std::io::Write;
use std::path::{Path, PathBuf};

use palisade_schemas::Alert;

/// Appends alerts as JSON lines; each line is flushed before the alert counts as written.
pub struct AlertsFile {
    path: PathBuf,
    file: std::fs::File,
}

impl AlertsFile {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { path: path.to_owned(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, alert: &Alert) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(alert).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()
    }
}

/// `2026-11-27T10:00:00.000Z High K8S.NODE_EICAR node=n1 pid=42 /tmp/x :: title`
pub fn human_line(alert: &Alert) -> String {
    let mut line = format!("{} {:<13} {}", crate::ecs::rfc3339(alert.timestamp_ms), alert.severity, alert.alert_type);
    for (label, value) in [
        ("cluster", alert.cluster.as_deref()),
        ("node", alert.node.as_deref()),
        ("ns", alert.namespace.as_deref()),
        ("workload", alert.workload.as_deref()),
        ("user", alert.user.as_deref()),
    ] {
        if let Some(value) = value {
            line.push_str(&format!(" {label}={value}"));
        }
    }
    if let Some(process) = &alert.process {
        line.push_str(&format!(" pid={} {}", process.pid, process.executable));
    }
    line.push_str(&format!(" :: {}", alert.title));
    line
}
