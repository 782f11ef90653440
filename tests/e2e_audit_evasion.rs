//! The control-plane evasions of issue 14, sent to the real kube-apiserver as a user can send them: each must
//! raise its alert through the audit webhook, and each look-alike beside it must stay quiet.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn cluster_role(name: &str, extra: Value) -> Value {
    let mut role =
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}});
    for (key, value) in extra.as_object().unwrap() {
        role[key] = value.clone();
    }
    role
}

#[test]
fn control_plane_evasions_raise_their_alerts_and_look_alikes_do_not() {
    let mut stack = common::Stack::new("evasion");
    stack.with_testbed_webhook();
    stack.set("PALISADE__ENRICH__DEDUP_WINDOW_SECS", "0");
    // Every kube-system container not allowed is new at once.
    stack.set("PALISADE__DETECT__BASELINES__KUBE_SYSTEM__LEARNING_SECS", "0");
    stack.start(&["audit", "detect", "enrich", "sink"]);

    let api = common::apiserver();
    let base = common::env("PALISADE_TEST_APISERVER");
    let id = stack.run.to_lowercase();
    let ns = format!("e2e-{id}");
    common::create_namespace(&api, &ns);
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let roles = "/apis/rbac.authorization.k8s.io/v1/clusterroles";
    let privileged = json!({"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": true}});
    let caps =
        |add: Value| json!({"name": "c", "image": "busybox:1.36", "securityContext": {"capabilities": {"add": add}}});

    // Evasions: each must fire.
    common::create_object(&api, &format!("{pods}?xdryRun=1"), pod("xdry", json!({"containers": [privileged]})));
    common::create_object(&api, &pods, pod("caps-all", json!({"containers": [caps(json!(["ALL"]))]})));
    common::create_object(
        &api,
        &pods,
        pod("caps-sysadmin", json!({"hostPID": true, "containers": [caps(json!(["SYS_ADMIN"]))]})),
    );
    let exec_rule = json!({"rules": [{"apiGroups": [""], "resources": ["*/exec"], "verbs": ["create"]}]});
    common::create_object(&api, roles, cluster_role(&format!("{id}-exec-any"), exec_rule));
    let proxy_rule = json!({"rules": [{"apiGroups": [""], "resources": ["*/proxy"], "verbs": ["get"]}]});
    common::create_object(&api, roles, cluster_role(&format!("{id}-proxy-any"), proxy_rule));
    let aggregation = json!({"aggregationRule": {"clusterRoleSelectors": [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]}});
    common::create_object(&api, roles, cluster_role(&format!("{id}-agg"), aggregation));
    common::create_object(
        &api,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": format!("{id}-edit-everywhere")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}),
    );
    let kube_proxy = |image: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "kube-proxy-", "labels": {"k8s-app": "kube-proxy", "palisade-e2e": id}},
        "spec": {"containers": [{"name": "kube-proxy", "image": image}]}})
    };
    let kube_system_pods = "/api/v1/namespaces/kube-system/pods";
    let moved = common::create_object(&api, kube_system_pods, kube_proxy("evil.example/kube-proxy:v1.36.3"));
    let moved_name = moved["metadata"]["name"].as_str().unwrap().to_owned();
    // A delete takes its options from its body and ignores the query then: `?dryRun=All` with a body deletes.
    let events = format!("/api/v1/namespaces/{ns}/events");
    let event = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
        "involvedObject": {"kind": "Pod", "name": "xdry", "namespace": ns}, "reason": "Test", "message": "evidence"})
    };
    let delete = |name: &str, query: &str, body: Value| {
        let answer = api.delete(format!("{base}{events}/{name}{query}")).json(&body).send().unwrap();
        assert!(answer.status().is_success(), "DELETE {name}: {}", answer.status());
        api.get(format!("{base}{events}/{name}")).send().unwrap().status().as_u16()
    };
    common::create_object(&api, &events, event("wiped"));
    let options = json!({"apiVersion": "v1", "kind": "DeleteOptions"});
    assert_eq!(delete("wiped", "?dryRun=All", options), 404, "the API server deleted it for real");

    // Look-alikes: none may fire.
    common::create_object(&api, &format!("{pods}?dryRun=All"), pod("dry-priv", json!({"containers": [privileged]})));
    common::create_object(&api, &pods, pod("caps-bind", json!({"containers": [caps(json!(["NET_BIND_SERVICE"]))]})));
    let log_rule = json!({"rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]});
    common::create_object(&api, roles, cluster_role(&format!("{id}-log-reader"), log_rule));
    common::create_object(
        &api,
        &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "team-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "team-lead"}]}),
    );
    common::create_object(&api, &events, event("kept"));
    let dry_options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "dryRun": ["All"]});
    assert_eq!(delete("kept", "", dry_options), 200, "a dry run by its body deletes nothing");
    let upstream = common::create_object(&api, kube_system_pods, kube_proxy("registry.k8s.io/kube-proxy:v1.36.3"));
    let upstream_name = upstream["metadata"]["name"].as_str().unwrap().to_owned();

    let expected: BTreeSet<(&str, String)> = [
        ("K8S_PrivilegedContainer", "Pod/xdry".to_owned()),
        ("K8S_PrivilegedContainer", "Pod/caps-all".to_owned()),
        ("K8S_PrivilegedContainer", "Pod/caps-sysadmin".to_owned()),
        ("K8S_HighPrivilegesRole", format!("ClusterRole/{id}-exec-any")),
        ("K8S_HighPrivilegesRole", format!("ClusterRole/{id}-proxy-any")),
        ("K8S_HighPrivilegesRole", format!("ClusterRole/{id}-agg")),
        ("K8S_ClusterAdminBinding", format!("ClusterRoleBinding/{id}-edit-everywhere")),
        ("K8S_KubeSystemContainer", format!("Pod/{moved_name}")),
        ("K8S_DeleteEvents", "event/wiped".to_owned()),
    ]
    .into_iter()
    .collect();
    let ours = |alert: &Value| {
        alert["namespace"] == ns.as_str()
            || alert["workload"]
                .as_str()
                .is_some_and(|w| w.contains(&id) || w.ends_with(&moved_name) || w.ends_with(&upstream_name))
    };
    // K8S_DeleteEvents names no workload: the deleted event is in its details.
    let key = |alert: &Value| {
        let alert_type = alert["alert_type"].as_str().unwrap_or_default().to_owned();
        if alert_type == "K8S_DeleteEvents" {
            return (alert_type, format!("event/{}", alert["details"]["event"].as_str().unwrap_or("?")));
        }
        (alert_type, alert["workload"].as_str().unwrap_or_default().to_owned())
    };
    let seen_all = |alerts: &[Value]| {
        let seen: BTreeSet<(String, String)> = alerts.iter().filter(|a| ours(a)).map(key).collect();
        expected.iter().all(|(t, w)| seen.contains(&(t.to_string(), w.clone())))
    };
    common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(90), seen_all);
    // The look-alikes were sent last: give any wrong alert for them time to arrive, then judge everything.
    std::thread::sleep(Duration::from_secs(3));
    let alerts: Vec<Value> = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(3), |_| false)
        .into_iter()
        .filter(|a| ours(a))
        .collect();
    let seen: BTreeSet<(String, String)> = alerts.iter().map(key).collect();
    let missing: Vec<_> = expected.iter().filter(|(t, w)| !seen.contains(&(t.to_string(), w.clone()))).collect();
    assert!(missing.is_empty(), "missing {missing:?}; got {seen:?}\naudit log:\n{}", stack.log("audit"));
    for (alert_type, workload) in &seen {
        let look_alike = ["Pod/dry-priv", "Pod/caps-bind", "RoleBinding/team-admin", "event/kept"]
            .contains(&workload.as_str())
            || workload.ends_with("-log-reader")
            || workload.ends_with(&upstream_name);
        assert!(!look_alike, "a look-alike raised {alert_type}: {workload}");
    }
    let reason = |workload: &str| {
        alerts.iter().find(|a| a["workload"] == workload).map(|a| a["details"]["reason"].clone()).unwrap_or_default()
    };
    assert_eq!(reason("Pod/caps-all"), "capabilities.add ALL");
    assert_eq!(reason("Pod/caps-sysadmin"), "capabilities.add SYS_ADMIN with hostPID");
    assert_eq!(reason("Pod/xdry"), "privileged");

    for path in [
        format!("{roles}/{id}-exec-any"),
        format!("{roles}/{id}-proxy-any"),
        format!("{roles}/{id}-agg"),
        format!("{roles}/{id}-log-reader"),
        format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{id}-edit-everywhere"),
        format!("{kube_system_pods}/{moved_name}"),
        format!("{kube_system_pods}/{upstream_name}"),
        format!("/api/v1/namespaces/{ns}"),
    ] {
        let _ = api.delete(format!("{base}{path}")).send();
    }
}
