//! The node baselines from real processes, as root: `palisade run` listens where the testbed API server's audit
//! webhook points, so the pod this test creates there reaches detect's cluster-state table through a real audit
//! event. Processes then run inside a container of that pod (own namespaces, a kubelet-style cgroup with the
//! pod's UID, as the collector tests build one) and connect to the API server (K8S.NODE_KubernetesAPI) and to
//! the cloud metadata address (K8S.NODE_ImdsCall), and processes on the host read /etc/shadow
//! (K8S.NODE_SuspectPasswordFileAccess, keyed by node): for each, the process used while learning stays quiet
//! afterwards, a new one after the learning period raises one alert, and its second time raises none.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Sandbox, sh};
use serde_json::{Value, json};

const LEARNING_SECS: u64 = 4;

const BASELINE_TYPES: [&str; 3] = ["K8S.NODE_KubernetesAPI", "K8S.NODE_ImdsCall", "K8S.NODE_SuspectPasswordFileAccess"];

/// The alerts of the three baseline types in the alerts file.
fn baseline_alerts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|alert| BASELINE_TYPES.iter().any(|t| alert["alert_type"] == *t))
        .collect()
}

#[test]
fn a_process_new_to_its_workload_or_node_alerts_once_after_learning() {
    let server = common::env("PALISADE_TEST_APISERVER");
    let api_address = server.trim_start_matches("https://").to_owned();
    let pki = common::env("PALISADE_TEST_PKI");
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[detect.baselines]\napi_server_addresses = [\"{api_address}\"]\n\
             [detect.baselines.kubernetes_api]\nlearning_secs = {LEARNING_SECS}\n\
             [detect.baselines.metadata_service]\nlearning_secs = {LEARNING_SECS}\n\
             [detect.baselines.shadow_readers]\nlearning_secs = {LEARNING_SECS}\n"
        ),
    )
    .unwrap();
    let alerts = work.path().join("alerts.jsonl");
    let state = work.path().join("detect-state.json");
    let (cert, key, token) =
        (format!("{pki}/audit-webhook.crt"), format!("{pki}/audit-webhook.key"), format!("{pki}/audit-webhook.token"));
    let envs = [
        ("PALISADE_CONFIG", config.to_str().unwrap()),
        ("PALISADE__AUDIT__LISTEN_ADDR", &common::env("PALISADE_TEST_AUDIT_WEBHOOK_ADDR")),
        ("PALISADE__AUDIT__TLS_CERT_PATH", &cert),
        ("PALISADE__AUDIT__TLS_KEY_PATH", &key),
        ("PALISADE__AUDIT__TOKEN_FILE", &token),
        ("PALISADE__METRICS_LISTEN_ADDR", "127.0.0.1:0"),
        ("PALISADE__DETECT__STATE_PATH", state.to_str().unwrap()),
        ("PALISADE__ENRICH__DEDUP_WINDOW_SECS", "0"),
    ];
    let (run, ready) = common::start_embedded_run(&alerts, &envs);
    assert!(ready.contains("node collection on"), "{ready}");

    // The pod, created in the real API server; its audit event carries the UID the server gave it.
    let api = common::apiserver();
    let namespace = format!("kapi-{}", std::process::id());
    common::create_namespace(&api, &namespace);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "operator-5f7d9-abcde", "namespace": namespace,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "operator-5f7d9",
                "uid": "7f6d1c1e-0000-4000-8000-000000000002", "controller": true}]},
        "spec": {"containers": [{"name": "manager", "image": "ops/operator:2"}]}});
    let created = api.post(format!("{server}/api/v1/namespaces/{namespace}/pods")).json(&pod).send().unwrap();
    assert!(created.status().is_success(), "pod: {}", created.status());
    let uid = created.json::<Value>().unwrap()["metadata"]["uid"].as_str().unwrap().to_owned();
    // The API server sends audit events in batches of at most a second.
    std::thread::sleep(Duration::from_secs(3));

    let mut sandbox = Sandbox::new();
    let procs = sandbox.container_cgroup(&uid);
    let manager = sandbox.stand_in("manager", "/usr/bin/curl");
    let intruder = sandbox.stand_in("intruder", "/usr/bin/curl");
    let backup_agent = sandbox.stand_in("backup-agent", "/bin/cat");
    let report_tool = sandbox.stand_in("report-tool", "/bin/cat");
    let in_container = |program: &str, url: &str| {
        sh(&format!(
            "echo $$ > {procs} && exec unshare --pid --fork --mount --uts --ipc --mount-proc \
             {program} -sk -m 1 -o /dev/null {url}"
        ));
    };
    let api_url = format!("{server}/healthz");
    let imds_url = "http://169.254.169.254/latest/meta-data/instance-id";
    let read_shadow = |program: &str| sh(&format!("{program} /etc/shadow > /dev/null"));
    // Learning: the workload's own process reaches the API server and the metadata service; a backup agent on
    // the host reads the shadow file.
    in_container(&manager, &api_url);
    in_container(&manager, imds_url);
    read_shadow(&backup_agent);
    std::thread::sleep(Duration::from_secs(LEARNING_SECS + 2));
    for _ in 0..2 {
        in_container(&manager, &api_url);
        in_container(&intruder, &api_url);
        in_container(&manager, imds_url);
        in_container(&intruder, imds_url);
        read_shadow(&backup_agent);
        read_shadow(&report_tool);
    }

    let deadline = Instant::now() + Duration::from_secs(15);
    while baseline_alerts(&alerts).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let raised = baseline_alerts(&alerts);
    let of = |alert_type: &str| -> Vec<&Value> { raised.iter().filter(|a| a["alert_type"] == alert_type).collect() };
    for alert_type in BASELINE_TYPES {
        assert_eq!(of(alert_type).len(), 1, "{alert_type}: one alert, for the new process only: {raised:#?}");
    }
    let imds = of("K8S.NODE_ImdsCall")[0];
    assert_eq!(imds["process"]["executable"], intruder.as_str());
    assert_eq!(imds["details"]["destination"], "169.254.169.254:80");
    assert_eq!(imds["workload"], "ReplicaSet/operator-5f7d9");
    let shadow = of("K8S.NODE_SuspectPasswordFileAccess")[0];
    assert_eq!(shadow["process"]["executable"], report_tool.as_str());
    assert_eq!(shadow["details"]["file"], "/etc/shadow");
    assert_eq!(shadow["in_container"], false);
    let alert = of("K8S.NODE_KubernetesAPI")[0];
    assert_eq!(alert["process"]["executable"], intruder.as_str());
    assert_eq!(alert["details"]["destination"], api_address.as_str());
    assert_eq!(alert["namespace"], namespace.as_str());
    assert_eq!(alert["workload"], "ReplicaSet/operator-5f7d9");
    assert_eq!(alert["pod"], "operator-5f7d9-abcde");
    assert_eq!(alert["image"], "ops/operator:2");
    assert_eq!(alert["in_container"], true);
    assert!(alert["details"]["known_processes"].as_str().is_some_and(|n| n == "1"), "{alert}");
    drop(run);
}
