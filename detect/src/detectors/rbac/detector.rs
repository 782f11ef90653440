//! K8S_ClusterAdminBinding: a RoleBinding or ClusterRoleBinding to the `cluster-admin` ClusterRole is created or
//! changed, or a ClusterRoleBinding to the built-in `admin` or `edit` roles (namespace administration in every
//! namespace: secrets, exec, workloads). K8S_HighPrivilegesRole: a Role or ClusterRole is created or changed so that
//! it grants wildcard verbs or resources, reads secrets, escalate/bind/impersonate, nodes/proxy, or exec/attach into
//! pods (subresource wildcards such as `*/exec` included), ephemeral containers, service-account tokens, or
//! aggregates the rules of the built-in administrative roles (or of nearly every role). Changes by the platform itself (API server bootstrap policy) are not reported; the role
//! aggregation controller's fill of a role that is not built in is, since that is how an aggregated role gets power.

use serde_json::Value;

use crate::detectors::audit_object::{by_platform, name_of, object, strings, succeeded};
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

pub const BINDING: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_ClusterAdminBinding",
    title: "Binding to the cluster-admin role created",
    severity: Severity::Informational,
    tactics: &["Persistence", "Privilege Escalation"],
    techniques: &["T1098.006"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a new (Cluster)RoleBinding to the cluster-admin role.",
    false_positives: "cluster bootstrap (installers, GitOps controllers binding their own service account). Except by `user` (the installer identity).",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};
pub const ROLE: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_HighPrivilegesRole",
    title: "Role with high privileges created",
    severity: Severity::Informational,
    tactics: &["Persistence"],
    techniques: &["T1098.006"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a new Role/ClusterRole grants high privileges (wildcard verbs or resources, secrets read cluster-wide, escalate/bind/impersonate, nodes/proxy, pods/exec).",
    false_positives: "operators' and controllers' ClusterRoles shipped by Helm charts. Except by `user` or `workload` (`ClusterRole/<name>`).",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};
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
        let role_name = role_ref.and_then(|r| r.get("name")).and_then(Value::as_str).unwrap_or_default();
        let to_cluster_role = role_ref.and_then(|r| r.get("kind")).and_then(Value::as_str) == Some("ClusterRole");
        let cluster_wide = audit.resource.as_deref() == Some("clusterrolebindings");
        let grants_admin = to_cluster_role
            && (role_name == "cluster-admin" || (cluster_wide && ADMINISTRATIVE_ROLES.contains(&role_name)));
        if !grants_admin {
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
        finding.details.insert("role".into(), role_name.to_owned());
        finding.details.insert("verb".into(), audit.verb.clone());
        vec![finding]
    }
}

/// Built-in ClusterRoles meant for one namespace: bound cluster-wide, they administer every namespace.
const ADMINISTRATIVE_ROLES: [&str; 2] = ["admin", "edit"];

/// The built-in ClusterRoles the aggregation controller fills; its changes to them are the platform's own.
const BUILT_IN_AGGREGATED_ROLES: [&str; 3] = ["admin", "edit", "view"];

const AGGREGATION_CONTROLLER: &str = "system:serviceaccount:kube-system:clusterrole-aggregation-controller";

pub struct HighPrivilegesRole;

/// Whether a rule's `resources` grant `resource/subresource` (`subresource` empty for the resource itself), the way
/// the RBAC authorizer matches (`ResourceMatches`): `*`, the exact name, or for a subresource `*/sub`. (`pods/*` is
/// not a wildcard there: it grants nothing.)
fn grants(resources: &[&str], resource: &str, subresource: &str) -> bool {
    resources.iter().any(|granted| {
        *granted == "*"
            || (subresource.is_empty() && *granted == resource)
            || (!subresource.is_empty()
                && (granted.split_once('/') == Some((resource, subresource)) || *granted == format!("*/{subresource}")))
    })
}

/// Why an aggregation rule is high-privilege: it selects the pieces of the built-in administrative roles, the
/// bootstrap roles (cluster-admin carries `kubernetes.io/bootstrapping`), or every ClusterRole (an empty selector).
fn aggregation_reasons(role: &Value) -> Vec<String> {
    let Some(selectors) = role.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut reasons = Vec::new();
    for selector in selectors {
        let labels = selector.get("matchLabels").and_then(Value::as_object);
        let expressions = selector.get("matchExpressions").and_then(Value::as_array);
        if labels.is_none_or(|l| l.is_empty()) && expressions.is_none_or(|e| e.is_empty()) {
            reasons.push("aggregates every ClusterRole (empty selector)".to_owned());
            continue;
        }
        // A role lacking a label (or not holding one value of it) matches DoesNotExist and NotIn: such an
        // expression selects nearly every ClusterRole, cluster-admin among them.
        let broad = expressions
            .into_iter()
            .flatten()
            .find(|e| matches!(e.get("operator").and_then(Value::as_str), Some("DoesNotExist" | "NotIn")));
        if let Some(expression) = broad {
            reasons.push(format!(
                "aggregates every ClusterRole without label {}",
                expression.get("key").and_then(Value::as_str).unwrap_or("?")
            ));
        }
        let keys = labels
            .into_iter()
            .flat_map(|l| l.keys().map(String::as_str))
            .chain(expressions.into_iter().flatten().filter_map(|e| e.get("key").and_then(Value::as_str)));
        for key in keys {
            let administrative = key == "kubernetes.io/bootstrapping"
                || key == "rbac.authorization.k8s.io/aggregate-to-admin"
                || key == "rbac.authorization.k8s.io/aggregate-to-edit";
            if administrative {
                reasons.push(format!("aggregates the ClusterRoles labelled {key}"));
            }
        }
    }
    reasons
}

/// Why a role's rules are high-privilege; empty when they are not.
pub fn high_privilege_reasons(role: &Value, cluster_scoped: bool) -> Vec<String> {
    let mut reasons = Vec::new();
    for rule in role.get("rules").and_then(Value::as_array).into_iter().flatten() {
        let verbs = strings(rule.get("verbs"));
        let resources = strings(rule.get("resources"));
        let any = |list: &[&str], wanted: &[&str]| list.iter().any(|item| wanted.contains(item));
        let allows = |resource: &str, subresource: &str| grants(&resources, resource, subresource);
        if verbs.contains(&"*") {
            reasons.push(format!("wildcard verbs on {}", resources.join(",")));
        }
        if resources.contains(&"*") {
            reasons.push(format!("wildcard resources ({})", verbs.join(",")));
        }
        if any(&verbs, &["escalate", "bind", "impersonate"]) {
            reasons.push(format!("{} on {}", verbs.join(","), resources.join(",")));
        }
        if cluster_scoped && allows("secrets", "") && any(&verbs, &["get", "list", "watch", "*"]) {
            reasons.push("reads secrets cluster-wide".into());
        }
        if allows("nodes", "proxy") {
            reasons.push("nodes/proxy (kubelet API)".into());
        }
        if (allows("pods", "exec") || allows("pods", "attach")) && any(&verbs, &["create", "get", "*"]) {
            reasons.push("exec or attach into pods".into());
        }
        // An ephemeral container runs what its author wants in a running pod: exec by another name.
        if allows("pods", "ephemeralcontainers") && any(&verbs, &["patch", "update", "*"]) {
            reasons.push("ephemeral containers in running pods".into());
        }
        if allows("serviceaccounts", "token") && any(&verbs, &["create", "*"]) {
            reasons.push("mints service-account tokens".into());
        }
    }
    if cluster_scoped {
        reasons.extend(aggregation_reasons(role));
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
        if !succeeded(audit, &CHANGE, RBAC_GROUP, &["roles", "clusterroles"]) {
            return Vec::new();
        }
        let Some(role) = object(audit) else { return Vec::new() };
        let cluster_scoped = audit.resource.as_deref() == Some("clusterroles");
        let name = name_of(audit, Some(&role));
        let aggregation_fill = audit.username == AGGREGATION_CONTROLLER
            && cluster_scoped
            && !BUILT_IN_AGGREGATED_ROLES.contains(&name.as_str());
        if by_platform(audit) && !aggregation_fill {
            return Vec::new();
        }
        let mut reasons = high_privilege_reasons(&role, cluster_scoped);
        if aggregation_fill {
            // The controller copies rules: only what they grant counts, not the selector it acted on.
            reasons.retain(|reason| !reason.starts_with("aggregates"));
            reasons.iter_mut().for_each(|reason| *reason = format!("filled in by role aggregation: {reason}"));
        }
        if reasons.is_empty() {
            return Vec::new();
        }
        let kind = if cluster_scoped { "ClusterRole" } else { "Role" };
        let mut finding = Finding { workload: Some(format!("{kind}/{name}")), ..Finding::default() };
        finding.details.insert("reasons".into(), reasons.join("; "));
        finding.details.insert("verb".into(), audit.verb.clone());
        vec![finding]
    }
}
