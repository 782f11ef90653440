//! K8S_PrivilegedContainer: a workload of any kind is created or changed with a container that is privileged or
//! as good as privileged (containers, init containers and ephemeral containers alike): `securityContext.privileged`
//! true, every capability added, `SYS_MODULE` (loads code into the host kernel), `DAC_READ_SEARCH` (reads any host
//! file by handle, the "shocker" escape), or `SYS_ADMIN`/`SYS_PTRACE` in a pod that shares the host's PID namespace
//! (enter or inject into host processes).

use serde_json::Value;

use crate::detectors::pod_spec::changed_pod_template;
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

pub const META: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_PrivilegedContainer",
    title: "Privileged container created",
    severity: Severity::Informational,
    tactics: &["Privilege Escalation"],
    techniques: &["T1610", "T1611"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a new privileged container (securityContext.privileged=true) in any workload kind.",
    false_positives: "CNI, CSI and monitoring agents (DaemonSets in kube-system or their own namespace). Except by `namespace` + `workload`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

pub struct PrivilegedContainer;

impl StatelessDetector for PrivilegedContainer {
    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else {
            return Vec::new();
        };
        let Some(template) = changed_pod_template(audit) else {
            return Vec::new();
        };
        let host_pid = template.spec.get("hostPID").and_then(Value::as_bool) == Some(true);
        template
            .containers()
            .into_iter()
            .filter_map(|container| Some((privilege(container.value, host_pid)?, container)))
            .map(|(reason, container)| {
                let mut finding = Finding {
                    subject: format!("{}/{}", container.list, container.name),
                    namespace: template.namespace.clone(),
                    pod: template.workload.strip_prefix("Pod/").map(str::to_owned),
                    workload: Some(template.workload.clone()),
                    image: container.image.map(str::to_owned),
                    ..Finding::default()
                };
                finding.details.insert("container".into(), container.name.to_owned());
                finding.details.insert("container_list".into(), container.list.to_owned());
                finding.details.insert("verb".into(), audit.verb.clone());
                finding.details.insert("reason".into(), reason);
                finding
            })
            .collect()
    }
}

/// An added capability, read generously (any case, with or without `CAP_`, surrounding spaces): reading more adds
/// as dangerous than a runtime would only errs towards an alert.
fn capability_name(raw: &str) -> String {
    let upper = raw.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").map(str::to_owned).unwrap_or(upper)
}

/// Whether a drop entry is the runtimes' wholesale `ALL`, read strictly as containerd reads it (case-insensitive,
/// nothing else): `CAP_ALL` or ` ALL` drop nothing there, so they must not cancel an added `ALL` here.
fn drops_all(raw: &str) -> bool {
    raw.eq_ignore_ascii_case("ALL")
}

/// Why a container is privileged or as good as privileged; `None` when it is not.
fn privilege(container: &Value, host_pid: bool) -> Option<String> {
    let context = container.get("securityContext")?;
    if context.get("privileged").and_then(Value::as_bool) == Some(true) {
        return Some("privileged".to_owned());
    }
    let list = |name: &str| -> Vec<String> {
        context
            .pointer(&format!("/capabilities/{name}"))
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).map(capability_name).collect())
            .unwrap_or_default()
    };
    let added = list("add");
    let drops_everything = context
        .pointer("/capabilities/drop")
        .and_then(Value::as_array)
        .is_some_and(|items| items.iter().filter_map(Value::as_str).any(drops_all));
    // The runtimes apply add ALL, then drop ALL, then the named capabilities.
    if added.iter().any(|c| c == "ALL") && !drops_everything {
        return Some("capabilities.add ALL".to_owned());
    }
    let has = |wanted: &str| added.iter().any(|c| c == wanted);
    for alone in ["SYS_MODULE", "DAC_READ_SEARCH"] {
        if has(alone) {
            return Some(format!("capabilities.add {alone}"));
        }
    }
    let host_reach: Vec<&str> = ["SYS_ADMIN", "SYS_PTRACE"].into_iter().filter(|c| has(c)).collect();
    (host_pid && !host_reach.is_empty()).then(|| format!("capabilities.add {} with hostPID", host_reach.join(",")))
}
