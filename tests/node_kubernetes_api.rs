//! K8S.NODE_KubernetesAPI's baseline half from real processes, as root: `palisade run` listens where the testbed
//! API server's audit webhook points, so the pod this test creates there reaches detect's cluster-state table
//! through a real audit event. Processes then run inside a container of that pod (own namespaces, a kubelet-style
//! cgroup with the pod's UID, as the collector tests build one) and connect to the API server: the process the
//! workload used while learning stays quiet afterwards, a new one after the learning period raises one alert
//! with the pod's namespace and workload, and its second connection raises none.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Sandbox, sh};
use serde_json::{Value, json};

const LEARNING_SECS: u64 = 4;

fn api_alerts(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|alert| alert["alert_type"] == "K8S.NODE_KubernetesAPI")
        .collect()
}

#[test]
fn a_process_new_to_its_workload_reaching_the_api_server_alerts_once_after_learning() {
    let server = common::env("PALISADE_TEST_APISERVER");
    let api_address = server.trim_start_matches("https://").to_owned();
    let pki = common::env("PALISADE_TEST_PKI");
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[detect.baselines]\napi_server_addresses = [\"{api_address}\"]\n\
             [detect.baselines.kubernetes_api]\nlearning_secs = {LEARNING_SECS}\n"
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
    let in_container = |program: &str| {
        sh(&format!(
            "echo $$ > {procs} && exec unshare --pid --fork --mount --uts --ipc --mount-proc \
             {program} -sk -m 2 -o /dev/null {server}/healthz"
        ));
    };
    // Learning: the workload's own process reaches the API server.
    in_container(&manager);
    std::thread::sleep(Duration::from_secs(LEARNING_SECS + 2));
    in_container(&manager);
    in_container(&intruder);
    in_container(&intruder);

    let deadline = Instant::now() + Duration::from_secs(15);
    while api_alerts(&alerts).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let raised = api_alerts(&alerts);
    assert_eq!(raised.len(), 1, "one alert, for the new process only: {raised:#?}");
    let alert = &raised[0];
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
