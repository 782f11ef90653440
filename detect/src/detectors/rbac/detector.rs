//! K8S_ClusterAdminBinding: a RoleBinding or ClusterRoleBinding to the `cluster-admin` ClusterRole is created or
//! changed. K8S_HighPrivilegesRole: a Role or ClusterRole is created or changed so that it grants wildcard verbs
//! or resources, reads secrets, escalate/bind/impersonate, nodes/proxy, or exec/attach into pods. Changes by the
//! platform itself (API server bootstrap policy, role aggregation) are not reported.

use serde_json::Value;

use crate::detectors::audit_object::{by_platform, name_of, object, strings, succeeded};
use crate::engine::{Event, Finding, StatelessDetector};
use crate::meta::{AlertTypeMeta, catalogue_entry};

const BINDING: &AlertTypeMeta = catalogue_entry("K8S_ClusterAdminBinding");
const ROLE: &AlertTypeMeta = catalogue_entry("K8S_HighPrivilegesRole");
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const CHANGE: [&str; 3] = ["create", "update", "patch"];

pub struct ClusterAdminBinding;

impl StatelessDetector for ClusterAdminBinding {
    fn meta(&self) -> &'static AlertTypeMeta {
        BINDING
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        if !succeeded(audit, &CHANGE, RBAC_GROUP, &["rolebindings", "clusterrolebindings"]) || by_platform(audit) {
            return Vec::new();
        }
        let Some(binding) = object(audit) else { return Vec::new() };
        let role_ref = binding.get("roleRef");
        let to_cluster_admin = role_ref.and_then(|r| r.get("name")).and_then(Value::as_str) == Some("cluster-admin")
            && role_ref.and_then(|r| r.get("kind")).and_then(Value::as_str) == Some("ClusterRole");
        if !to_cluster_admin {
            return Vec::new();
        }
        let subjects: Vec<String> = binding
            .get("subjects")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|s| {
                        format!(
                            "{}:{}{}",
                            s.get("kind").and_then(Value::as_str).unwrap_or("?"),
                            s.get("namespace").and_then(Value::as_str).map(|n| format!("{n}/")).unwrap_or_default(),
                            s.get("name").and_then(Value::as_str).unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kind = if audit.resource.as_deref() == Some("rolebindings") { "RoleBinding" } else { "ClusterRoleBinding" };
        let mut finding =
            Finding { workload: Some(format!("{kind}/{}", name_of(audit, Some(&binding)))), ..Finding::default() };
        finding.details.insert("subjects".into(), subjects.join(", "));
        finding.details.insert("verb".into(), audit.verb.clone());
        vec![finding]
    }
}

pub struct HighPrivilegesRole;

/// Why a role's rules are high-privilege; empty when they are not.
pub fn high_privilege_reasons(role: &Value, cluster_scoped: bool) -> Vec<String> {
    let mut reasons = Vec::new();
    for rule in role.get("rules").and_then(Value::as_array).into_iter().flatten() {
        let verbs = strings(rule.get("verbs"));
        let resources = strings(rule.get("resources"));
        let any = |list: &[&str], wanted: &[&str]| list.iter().any(|item| wanted.contains(item));
        if verbs.contains(&"*") {
            reasons.push(format!("wildcard verbs on {}", resources.join(",")));
        }
        if resources.contains(&"*") {
            reasons.push(format!("wildcard resources ({})", verbs.join(",")));
        }
        if any(&verbs, &["escalate", "bind", "impersonate"]) {
            reasons.push(format!("{} on {}", verbs.join(","), resources.join(",")));
        }
        if cluster_scoped && resources.contains(&"secrets") && any(&verbs, &["get", "list", "watch", "*"]) {
            reasons.push("reads secrets cluster-wide".into());
        }
        if resources.contains(&"nodes/proxy") {
            reasons.push("nodes/proxy (kubelet API)".into());
        }
        if any(&resources, &["pods/exec", "pods/attach"]) && any(&verbs, &["create", "get", "*"]) {
            reasons.push("exec or attach into pods".into());
        }
    }
    reasons.dedup();
    reasons
}

impl StatelessDetector for HighPrivilegesRole {
    fn meta(&self) -> &'static AlertTypeMeta {
        ROLE
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        if !succeeded(audit, &CHANGE, RBAC_GROUP, &["roles", "clusterroles"]) || by_platform(audit) {
            return Vec::new();
        }
        let Some(role) = object(audit) else { return Vec::new() };
        let cluster_scoped = audit.resource.as_deref() == Some("clusterroles");
        let reasons = high_privilege_reasons(&role, cluster_scoped);
        if reasons.is_empty() {
            return Vec::new();
        }
        let kind = if cluster_scoped { "ClusterRole" } else { "Role" };
        let mut finding =
            Finding { workload: Some(format!("{kind}/{}", name_of(audit, Some(&role)))), ..Finding::default() };
        finding.details.insert("reasons".into(), reasons.join("; "));
        finding.details.insert("verb".into(), audit.verb.clone());
        vec![finding]
    }
}
