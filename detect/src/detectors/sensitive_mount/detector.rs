//! K8S_SensitiveMount: a workload of any kind is created or changed with a hostPath volume on a sensitive host
//! path (the path or anything under it; `/` only itself). List: `detect/data/sensitive_host_paths.txt`.

use serde_json::Value;

use crate::detectors::pod_spec::changed_pod_template;
use crate::lists::{SHIPPED_AUDIT_LISTS, SharedAuditLists};
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

pub const META: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_SensitiveMount",
    title: "Container with a sensitive host path mount",
    severity: Severity::Informational,
    tactics: &["Privilege Escalation"],
    techniques: &["T1611", "T1610"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a new pod/workload mounts a sensitive hostPath (/, /etc, /root, /proc, /sys, /var/run/docker.sock, /run/containerd, /var/lib/kubelet, /etc/kubernetes, /home, …; configurable).",
    false_positives: "node agents (log shippers reading /var/log, CSI drivers under /var/lib/kubelet, Palisade's collector). Except by `namespace` + `workload`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

/// Reads `sensitive_host_paths` of the control-plane lists.
pub struct SensitiveMount {
    pub lists: SharedAuditLists,
}

impl Default for SensitiveMount {
    /// With the shipped lists.
    fn default() -> Self {
        Self { lists: SHIPPED_AUDIT_LISTS.clone() }
    }
}

/// The shipped sensitive path that `path` is, or lies under.
#[cfg(test)]
pub fn sensitive(path: &str) -> Option<&'static str> {
    sensitive_in(&crate::lists::SHIPPED_AUDIT.sensitive_host_paths, path)
}

/// The path of `paths` that `path` is, or lies under.
pub fn sensitive_in<'a>(paths: &'a [String], path: &str) -> Option<&'a str> {
    let trimmed = path.trim_end_matches('/');
    let path = if trimmed.is_empty() { "/" } else { trimmed };
    paths.iter().map(String::as_str).find(|candidate| {
        path == *candidate
            || (*candidate != "/" && path.strip_prefix(candidate).is_some_and(|rest| rest.starts_with('/')))
    })
}

impl StatelessDetector for SensitiveMount {
    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        let Some(template) = changed_pod_template(audit) else { return Vec::new() };
        let lists = self.lists.current();
        let volumes = template.spec.get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
        volumes
            .iter()
            .filter_map(|volume| {
                let path = volume.pointer("/hostPath/path").and_then(Value::as_str)?;
                let matched = sensitive_in(&lists.sensitive_host_paths, path)?;
                let name = volume.get("name").and_then(Value::as_str).unwrap_or("?");
                let mut finding = Finding {
                    subject: format!("volume/{name}"),
                    namespace: template.namespace.clone(),
                    pod: template.workload.strip_prefix("Pod/").map(str::to_owned),
                    workload: Some(template.workload.clone()),
                    image: template.containers().first().and_then(|c| c.image).map(str::to_owned),
                    ..Finding::default()
                };
                finding.details.insert("volume".into(), name.to_owned());
                finding.details.insert("host_path".into(), path.to_owned());
                finding.details.insert("sensitive_path".into(), matched.to_owned());
                Some(finding)
            })
            .collect()
    }
}
