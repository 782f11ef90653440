use palisade_schemas::AuditEvent;
use serde_json::{Value, json};

use super::{ClusterAdminBinding, HighPrivilegesRole};
use crate::unit::{Event, StatelessDetector};

fn change(user: &str, verb: &str, resource: &str, object: Value) -> AuditEvent {
    let event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": verb, "requestURI": "/apis",
        "user": {"username": user}, "objectRef": {"resource": resource, "apiGroup": "rbac.authorization.k8s.io"},
        "responseStatus": {"code": 201}, "requestObject": object, "responseObject": object,
        "stageTimestamp": "2026-11-27T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

fn binding(role: &str) -> Value {
    json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": role},
           "subjects": [{"kind": "ServiceAccount", "namespace": "default", "name": "attacker"}]})
}

fn role(rules: Value) -> Value {
    json!({"kind": "ClusterRole", "metadata": {"name": "r"}, "rules": rules})
}

#[test]
fn binding_to_cluster_admin_fires_with_its_subjects() {
    let findings = ClusterAdminBinding.detect(&Event::Audit(&change(
        "alice",
        "create",
        "clusterrolebindings",
        binding("cluster-admin"),
    )));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].details["subjects"], "ServiceAccount:default/attacker");
    assert_eq!(findings[0].workload.as_deref(), Some("ClusterRoleBinding/b"));
}

#[test]
fn binding_look_alikes_do_not_fire() {
    let view = change("alice", "create", "clusterrolebindings", binding("view"));
    assert!(ClusterAdminBinding.detect(&Event::Audit(&view)).is_empty());
    let bootstrap = change("system:apiserver", "create", "clusterrolebindings", binding("cluster-admin"));
    assert!(ClusterAdminBinding.detect(&Event::Audit(&bootstrap)).is_empty(), "the API server's bootstrap policy");
    let deleted = change("alice", "delete", "clusterrolebindings", binding("cluster-admin"));
    assert!(ClusterAdminBinding.detect(&Event::Audit(&deleted)).is_empty());
}

#[test]
fn high_privilege_roles_fire_with_the_reason() {
    for (rules, reason) in [
        (json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]), "wildcard verbs"),
        (json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}]), "wildcard resources"),
        (json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]), "reads secrets cluster-wide"),
        (json!([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]), "exec or attach"),
        (json!([{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}]), "nodes/proxy"),
        (
            json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["escalate"]}]),
            "escalate",
        ),
    ] {
        let findings =
            HighPrivilegesRole.detect(&Event::Audit(&change("alice", "create", "clusterroles", role(rules))));
        assert_eq!(findings.len(), 1, "{reason}");
        assert!(findings[0].details["reasons"].contains(reason), "{}", findings[0].details["reasons"]);
    }
}

#[test]
fn ordinary_roles_and_namespaced_secret_readers_do_not_fire() {
    let reader =
        role(json!([{"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]}]));
    assert!(HighPrivilegesRole.detect(&Event::Audit(&change("alice", "create", "clusterroles", reader))).is_empty());
    let namespaced = json!({"kind": "Role", "metadata": {"name": "r"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]});
    assert!(HighPrivilegesRole.detect(&Event::Audit(&change("alice", "create", "roles", namespaced))).is_empty());
    let bootstrap = role(json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]));
    assert!(
        HighPrivilegesRole
            .detect(&Event::Audit(&change("system:apiserver", "create", "clusterroles", bootstrap)))
            .is_empty()
    );
}

#[test]
fn falco_traces_fire_for_the_risky_roles_and_binding() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/falco_k8s_audit_traces");
    let load = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        AuditEvent::from_k8s_json(&serde_json::from_str(&text).unwrap(), "falco").unwrap()
    };
    for name in [
        "create_cluster_role_wildcard_verbs.json",
        "create_cluster_role_wildcard_resources.json",
        "create_cluster_role_pod_exec.json",
    ] {
        assert_eq!(HighPrivilegesRole.detect(&Event::Audit(&load(name))).len(), 1, "{name}");
    }
    assert!(HighPrivilegesRole.detect(&Event::Audit(&load("create_clusterrole.json"))).is_empty());
    assert_eq!(ClusterAdminBinding.detect(&Event::Audit(&load("attach_cluster_admin_role.json"))).len(), 1);
    assert!(ClusterAdminBinding.detect(&Event::Audit(&load("create_clusterrolebinding.json"))).is_empty());
}

#[test]
fn cluster_wide_bindings_to_admin_and_edit_fire_and_namespaced_ones_do_not() {
    for role in ["admin", "edit"] {
        let findings =
            ClusterAdminBinding.detect(&Event::Audit(&change("alice", "create", "clusterrolebindings", binding(role))));
        assert_eq!(findings.len(), 1, "{role}");
        assert_eq!(findings[0].details["role"], role);
    }
    let mut namespaced = binding("admin");
    namespaced["kind"] = json!("RoleBinding");
    let team_admin = change("alice", "create", "rolebindings", namespaced);
    assert!(ClusterAdminBinding.detect(&Event::Audit(&team_admin)).is_empty(), "a namespace's own admin");
}

#[test]
fn subresource_wildcards_grant_what_they_name() {
    for (rules, reason) in [
        (json!([{"apiGroups": [""], "resources": ["*/exec"], "verbs": ["create"]}]), "exec or attach"),
        (json!([{"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["patch"]}]), "ephemeral"),
        (json!([{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}]), "tokens"),
        (json!([{"apiGroups": [""], "resources": ["*/attach"], "verbs": ["create"]}]), "exec or attach"),
        (json!([{"apiGroups": [""], "resources": ["*/proxy"], "verbs": ["get"]}]), "nodes/proxy"),
    ] {
        let findings =
            HighPrivilegesRole.detect(&Event::Audit(&change("alice", "create", "clusterroles", role(rules.clone()))));
        assert_eq!(findings.len(), 1, "{rules}");
        assert!(findings[0].details["reasons"].contains(reason), "{rules}: {}", findings[0].details["reasons"]);
    }
    let log_reader = role(json!([{"apiGroups": [""], "resources": ["pods/log", "pods"], "verbs": ["get", "list"]}]));
    assert!(
        HighPrivilegesRole.detect(&Event::Audit(&change("alice", "create", "clusterroles", log_reader))).is_empty()
    );
    // `pods/*` and `nodes/*` are no wildcards to the RBAC authorizer: they grant nothing.
    for rules in [
        json!([{"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get", "create"]}]),
        json!([{"apiGroups": [""], "resources": ["nodes/*"], "verbs": ["get"]}]),
    ] {
        let role = role(rules.clone());
        assert!(
            HighPrivilegesRole.detect(&Event::Audit(&change("alice", "create", "clusterroles", role))).is_empty(),
            "{rules}"
        );
    }
    let status_writer = role(json!([{"apiGroups": [""], "resources": ["*/status"], "verbs": ["update", "patch"]}]));
    assert!(
        HighPrivilegesRole.detect(&Event::Audit(&change("alice", "create", "clusterroles", status_writer))).is_empty()
    );
}

fn aggregated(selectors: Value) -> Value {
    json!({"kind": "ClusterRole", "metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": selectors},
           "rules": []})
}

#[test]
fn aggregation_of_administrative_roles_fires_at_creation() {
    for selectors in [
        json!([{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]),
        json!([{"matchExpressions": [{"key": "kubernetes.io/bootstrapping", "operator": "Exists"}]}]),
        json!([{}]),
        json!([{"matchLabels": {}}]),
        json!([{"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}]),
        json!([{"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}]),
    ] {
        let created = change("alice", "create", "clusterroles", aggregated(selectors.clone()));
        let findings = HighPrivilegesRole.detect(&Event::Audit(&created));
        assert_eq!(findings.len(), 1, "{selectors}");
        assert!(findings[0].details["reasons"].starts_with("aggregates"), "{}", findings[0].details["reasons"]);
    }
    let monitoring = aggregated(json!([{"matchLabels": {"example.com/aggregate-to-monitoring": "true"}}]));
    assert!(
        HighPrivilegesRole.detect(&Event::Audit(&change("alice", "create", "clusterroles", monitoring))).is_empty()
    );
}

#[test]
fn the_aggregation_controllers_fill_is_judged_by_the_rules_it_copied() {
    let controller = "system:serviceaccount:kube-system:clusterrole-aggregation-controller";
    let mut filled = aggregated(json!([{"matchLabels": {"example.com/aggregate-to-ops": "true"}}]));
    filled["rules"] = json!([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]);
    let findings =
        HighPrivilegesRole.detect(&Event::Audit(&change(controller, "patch", "clusterroles", filled.clone())));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].details["reasons"], "filled in by role aggregation: exec or attach into pods");
    assert_eq!(findings[0].workload.as_deref(), Some("ClusterRole/agg"));
    // The built-in admin role filled the same way is the platform's own.
    filled["metadata"]["name"] = json!("admin");
    assert!(HighPrivilegesRole.detect(&Event::Audit(&change(controller, "patch", "clusterroles", filled))).is_empty());
    // A harmless fill stays quiet.
    let mut reader = aggregated(json!([{"matchLabels": {"example.com/aggregate-to-ops": "true"}}]));
    reader["rules"] = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
    assert!(HighPrivilegesRole.detect(&Event::Audit(&change(controller, "patch", "clusterroles", reader))).is_empty());
}
