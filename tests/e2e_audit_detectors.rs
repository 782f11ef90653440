//! Every control-plane detector built so far, fed by the real kube-apiserver: objects are created through its
//! REST API, the audit webhook carries the events to `palisade audit`, and the alerts topic must show exactly
//! the expected alert types — and none for the harmless twins created beside them.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

#[test]
fn objects_created_through_the_api_server_raise_the_expected_alert_types() {
    let mut stack = common::Stack::new("detectors");
    stack.with_testbed_webhook();
    // The proxy list names one loopback address; the test's requests from it must raise K8S_TI_Proxy, its
    // requests from 127.0.0.1 must not.
    let proxy_list = stack.logs.join("proxy_ips.txt");
    std::fs::write(&proxy_list, "# test list\n127.0.0.2/32\n").unwrap();
    stack.set("PALISADE__DETECT__PROXY_LIST_PATH", proxy_list.to_str().unwrap());
    stack.set("PALISADE__ENRICH__DEDUP_FLUSH_SECS", "1");
    stack.start(&["audit", "detect", "enrich", "sink"]);

    let api = common::apiserver();
    let base = common::env("PALISADE_TEST_APISERVER");
    let id = stack.run.to_lowercase();
    let ns = format!("e2e-{id}");
    common::create_object(
        &api,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    );
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let services = format!("/api/v1/namespaces/{ns}/services");
    let container = json!({"name": "app", "image": "busybox:1.36"});

    // Should fire.
    common::create_object(
        &api,
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "socket"},
        "spec": {"containers": [container], "volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]}}),
    );
    common::create_object(
        &api,
        &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "miner"}, "spec": {"selector": {"matchLabels": {"app": "miner"}},
        "template": {"metadata": {"labels": {"app": "miner"}}, "spec": {"containers": [{"name": "m", "image": "metal3d/xmrig:latest"}]}}}}),
    );
    common::create_object(
        &api,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": format!("{id}-admin")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}),
    );
    common::create_object(
        &api,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole", "metadata": {"name": format!("{id}-everything")},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    );
    common::create_object(
        &api,
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("{id}-hook")},
        "webhooks": [{"name": "audit.example.com", "clientConfig": {"url": "https://203.0.113.10/validate"},
            "rules": [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["cronjobs"]}],
            "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 1,
            "namespaceSelector": {"matchLabels": {"palisade-e2e-never": "true"}}}]}),
    );
    // A fixed name: remove what an interrupted earlier run may have left.
    let _ = api.delete(format!("{base}/api/v1/namespaces/kube-system/configmaps/coredns-custom")).send();
    common::create_object(
        &api,
        "/api/v1/namespaces/kube-system/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "coredns-custom"}, "data": {"evil.server": format!("{id}.example:53 {{ forward . 198.51.100.9 }}")}}),
    );
    common::create_object(
        &api,
        &format!("/api/v1/namespaces/{ns}/events"),
        json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "trace"}, "involvedObject": {"kind": "Pod", "name": "socket", "namespace": ns},
        "reason": "Test", "message": "to be deleted"}),
    );
    let deleted = api.delete(format!("{base}/api/v1/namespaces/{ns}/events/trace")).send().unwrap();
    assert!(deleted.status().is_success());
    for (name, port, ranges) in [
        ("cache", 6379, json!(null)),
        ("kubernetes-dashboard", 443, json!(null)),
        ("db", 5432, json!(["0.0.0.0/0"])),
        ("argocd-server", 443, json!(null)),
    ] {
        let mut spec = json!({"type": "LoadBalancer", "ports": [{"port": port}], "selector": {"app": name}});
        if !ranges.is_null() {
            spec["loadBalancerSourceRanges"] = ranges;
        }
        common::create_object(
            &api,
            &services,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}),
        );
    }

    // kube-hunter's active hunters, as it sends them: a probe namespace, a probe pod, a JSON-patch probe.
    let hex = |salt: u64| format!("{:05x}", (std::process::id() as u64 * 2_654_435_761 + salt) & 0xf_ffff);
    let (probe_ns, probe_pod) = (hex(1), hex(2));
    common::create_object(
        &api,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": probe_ns, "labels": {"name": probe_ns}}}),
    );
    common::create_object(
        &api,
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": probe_pod},
        "spec": {"containers": [{"name": probe_pod, "image": "nginx:1.7.9", "ports": [{"containerPort": 80}]}]}}),
    );
    let patched = api
        .patch(format!("{base}{pods}/{probe_pod}"))
        .header("Content-Type", "application/json-patch+json")
        .body(r#"[{"op": "add", "path": "/hello", "value": ["world"]}]"#)
        .send()
        .unwrap();
    eprintln!("kube-hunter patch probe answered {}", patched.status());

    // A request from an address on the proxy list.
    let from_proxy = common::apiserver_from(Some("127.0.0.2".parse().unwrap()));
    let listed = from_proxy.get(format!("{base}{pods}")).send().unwrap();
    assert!(listed.status().is_success());

    // Harmless twins: must not fire.
    common::create_object(
        &api,
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "data"},
        "spec": {"containers": [container], "volumes": [{"name": "d", "hostPath": {"path": "/srv/data"}}]}}),
    );
    common::create_object(
        &api,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole", "metadata": {"name": format!("{id}-reader")},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    );
    common::create_object(
        &api,
        &services,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "internal-cache"},
        "spec": {"type": "ClusterIP", "ports": [{"port": 6379}], "selector": {"app": "cache"}}}),
    );

    let expected: BTreeSet<&str> = [
        "K8S_SensitiveMount",
        "K8S_MaliciousContainerImage",
        "K8S_ClusterAdminBinding",
        "K8S_HighPrivilegesRole",
        "K8S_AdmissionController",
        "K8S_CoreDnsModification",
        "K8S_DeleteEvents",
        "K8S_ExposedRedis",
        "K8S_ExposedDashboard",
        "K8S_ExposedPostgresBroadIPRange",
        "K8S_ExposedService",
        "K8S_PenTestToolsKubeHunter",
        "K8S_TI_Proxy",
    ]
    .into_iter()
    .collect();
    let ours = |alert: &Value| {
        alert["namespace"] == ns.as_str()
            || alert["workload"].as_str().is_some_and(|w| w.contains(&id) || w == "ConfigMap/coredns-custom")
            || alert["evidence"][0].as_str().is_some_and(|e| e.contains(&id) || e.contains(&format!("\"{probe_ns}\"")))
    };
    common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(60), |seen: &[Value]| {
        let types: BTreeSet<&str> = seen.iter().filter(|a| ours(a)).filter_map(|a| a["alert_type"].as_str()).collect();
        expected.iter().all(|t| types.contains(t))
    });
    // Give stragglers (a wrong alert for a twin) time to arrive, then judge on everything the topic holds.
    std::thread::sleep(Duration::from_secs(2));
    let alerts: Vec<Value> = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(3), |_| false)
        .into_iter()
        .filter(|a| ours(a))
        .collect();
    let seen: BTreeSet<&str> = alerts.iter().filter_map(|a| a["alert_type"].as_str()).collect();
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(missing.is_empty(), "missing alert types {missing:?}; got {seen:?}\naudit log:\n{}", stack.log("audit"));
    for alert in &alerts {
        let workload = alert["workload"].as_str().unwrap_or_default();
        assert!(
            !workload.ends_with("/data") && !workload.contains("-reader") && !workload.ends_with("/internal-cache"),
            "a harmless twin raised {}: {workload}",
            alert["alert_type"]
        );
    }
    let by_type = |t: &str| alerts.iter().find(|a| a["alert_type"] == t).unwrap();
    assert_eq!(by_type("K8S_MaliciousContainerImage")["workload"], "Deployment/miner");
    assert_eq!(by_type("K8S_SensitiveMount")["details"]["host_path"], "/var/run/docker.sock");
    assert_eq!(by_type("K8S_ClusterAdminBinding")["details"]["subjects"], format!("ServiceAccount:{ns}/default"));
    assert_eq!(by_type("K8S_AdmissionController")["details"]["webhook_targets"], "https://203.0.113.10/validate");
    assert_eq!(by_type("K8S_DeleteEvents")["user"], "palisade-test-admin");
    let hunter: Vec<&str> = alerts
        .iter()
        .filter(|a| a["alert_type"] == "K8S_PenTestToolsKubeHunter")
        .filter_map(|a| a["details"]["signature"].as_str())
        .collect();
    assert!(hunter.iter().any(|s| s.starts_with("probe namespace")), "{hunter:?}");
    // The probe pod and the JSON-patch probe are about the same entity (type, namespace, user) within the dedup
    // window: they fold into one alert, sent again with count 2. Which of the two is the group's first (and so gives
    // the signature) depends on the order the API server hands its audit events over, which is not the order of the
    // requests when it is busy: either is right, nothing else is.
    assert!(hunter.iter().any(|s| s.starts_with("probe pod") || s.starts_with("JSON patch")), "{hunter:?}");
    assert!(
        hunter.iter().all(|s| ["probe namespace", "probe pod", "JSON patch"].iter().any(|p| s.starts_with(p))),
        "{hunter:?}"
    );
    let folded = alerts
        .iter()
        .filter(|a| a["alert_type"] == "K8S_PenTestToolsKubeHunter" && a["namespace"] == ns.as_str())
        .filter_map(|a| a["count"].as_i64())
        .max();
    assert_eq!(folded, Some(2), "{hunter:?}");
    for alert in alerts.iter().filter(|a| a["alert_type"] == "K8S_TI_Proxy") {
        assert_eq!(alert["details"]["listed_source_ip"], "127.0.0.2", "only the listed address fires");
        assert_eq!(alert["source_ip"], "127.0.0.2");
    }

    // Clean up the cluster-scoped objects (the namespace takes the rest).
    for path in [
        format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{id}-admin"),
        format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{id}-everything"),
        format!("/apis/rbac.authorization.k8s.io/v1/clusterroles/{id}-reader"),
        format!("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{id}-hook"),
        "/api/v1/namespaces/kube-system/configmaps/coredns-custom".to_owned(),
        format!("/api/v1/namespaces/{ns}"),
        format!("/api/v1/namespaces/{probe_ns}"),
    ] {
        let _ = api.delete(format!("{base}{path}")).send();
    }
}
