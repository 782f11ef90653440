//! The baselines and joins, fed by the real kube-apiserver (audit webhook) and a cloud activity file, through
//! Kafka: a service account, kube-system and an add-on's managed identity learn for 10 s of event time, the
//! detector is SIGKILLed and restarted in the middle of that (state from its changelog topic), and after learning only
//! the operations never seen raise alerts. The joins fire on the second of their two objects, and their
//! look-alikes raise nothing. kube-hunter's passive discovery (its listings from a Python client) is here too: it
//! is the one K8S_PenTestToolsKubeHunter pattern without objects of its own.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const LEARNING_SECS: u64 = 10;

/// A client that authenticates as a service account, with a token from the TokenRequest API.
fn service_account_client(api: &reqwest::blocking::Client, ns: &str, name: &str) -> reqwest::blocking::Client {
    common::create_object(
        api,
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    );
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}});
    let answer = common::create_object(api, &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"), request);
    let token = answer["status"]["token"].as_str().expect("a token").to_owned();
    let pki = std::path::PathBuf::from(common::env("PALISADE_TEST_PKI"));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt")).unwrap()).unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    bearer.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    reqwest::blocking::Client::builder().add_root_certificate(ca).default_headers(headers).build().unwrap()
}

/// A request as the service account; RBAC refuses it (403), which is still an operation it performed.
fn sa_get(client: &reqwest::blocking::Client, path: &str) {
    let base = common::env("PALISADE_TEST_APISERVER");
    let status = client.get(format!("{base}{path}")).send().unwrap().status();
    assert!(status.as_u16() == 403 || status.is_success(), "GET {path} as the service account: {status}");
}

fn deployment(name: &str, labels: Value, container: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}})
}

fn service(name: &str, kind: &str, port: i64, selector: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": kind, "ports": [{"port": port}], "selector": selector}})
}

/// One Azure activity log record (diagnostic-settings export form) by `identity`.
fn azure_record(id: &str, identity: &str, managed: bool, operation: &str, time: &str) -> String {
    let claims = if managed {
        json!({"xms_mirid": format!("/subscriptions/s/resourcegroups/mc/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{identity}"), "oid": identity})
    } else {
        json!({"oid": identity, "idtyp": "user"})
    };
    json!({"time": time, "operationName": operation, "correlationId": id, "resultType": "Success",
        "resourceId": "/subscriptions/s/resourceGroups/rg", "identity": {"claims": claims}})
    .to_string()
}

#[test]
fn baselines_learn_survive_a_detector_restart_and_joins_fire_on_the_second_object() {
    let mut stack = common::Stack::new("baselines");
    stack.with_testbed_webhook();
    let id = stack.run.to_lowercase();
    let cloud_file = stack.logs.join("cloud.jsonl");
    std::fs::write(&cloud_file, "").unwrap();
    for (key, value) in [
        ("PALISADE__DETECT__KAFKA_STATE", "true".into()),
        ("PALISADE__DETECT__COMMIT_INTERVAL_MS", "500".into()),
        ("PALISADE__DETECT__BASELINES__SERVICE_ACCOUNTS__LEARNING_SECS", LEARNING_SECS.to_string()),
        ("PALISADE__DETECT__BASELINES__KUBE_SYSTEM__LEARNING_SECS", LEARNING_SECS.to_string()),
        ("PALISADE__DETECT__BASELINES__CLOUD_IDENTITIES__LEARNING_SECS", LEARNING_SECS.to_string()),
        ("PALISADE__DETECT__BASELINES__KUBE_SYSTEM_ALLOW", format!("[\"{id}-allowed*\"]")),
        ("PALISADE__AUDIT__CLOUD_LOG_PATHS", format!("[\"{}\"]", cloud_file.display())),
        ("PALISADE__AUDIT__LOG_POSITION_DIR", stack.logs.join("positions").display().to_string()),
        ("PALISADE__ENRICH__DEDUP_FLUSH_SECS", "1".into()),
    ] {
        stack.set(key, &value);
    }
    stack.start(&["audit", "detect", "enrich", "sink"]);
    let api = common::apiserver();
    let base = common::env("PALISADE_TEST_APISERVER");
    let ns = format!("e2e-{id}");
    common::create_namespace(&api, &ns);
    let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    let services = format!("/api/v1/namespaces/{ns}/services");
    let kube_system = "/apis/apps/v1/namespaces/kube-system/deployments";
    let mi = format!("mi-{id}");
    let append = |line: String| {
        let mut file = std::fs::OpenOptions::new().append(true).open(&cloud_file).unwrap();
        writeln!(file, "{line}").unwrap();
    };

    // Learning: the service account reads pods, kube-system gets an agent, the managed identity scales a VM set.
    let learning_started = Instant::now();
    let worker = service_account_client(&api, &ns, "worker");
    sa_get(&worker, &format!("/api/v1/namespaces/{ns}/pods"));
    let agent = json!({"name": "agent", "image": "corp/agent:1.0"});
    common::create_object(
        &api,
        kube_system,
        deployment(&format!("{id}-agent"), json!({"app": format!("{id}-agent")}), agent.clone()),
    );
    append(azure_record(
        &format!("{id}-1"),
        &mi,
        true,
        "Microsoft.Compute/virtualMachineScaleSets/write",
        "2026-12-02T10:00:00Z",
    ));

    // The detector dies mid-learning and comes back from its changelog.
    std::thread::sleep(Duration::from_secs(3));
    stack.kill("detect");
    stack.spawn(&["detect"]);
    std::thread::sleep(Duration::from_secs(2));
    stack.assert_running();
    // Still learning after the restart: this one is learned too.
    sa_get(&worker, &format!("/api/v1/namespaces/{ns}/configmaps"));

    // Joins, each object of a pair in turn: pods then Service (Postgres), Service then pods (Kubeflow).
    let trust =
        json!({"name": "db", "image": "postgres:16", "env": [{"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"}]});
    let password = json!({"name": "db", "image": "postgres:16", "env": [{"name": "POSTGRES_HOST_AUTH_METHOD", "value": "scram-sha-256"}]});
    common::create_object(&api, &deployments, deployment("pg", json!({"app": "pg"}), trust));
    common::create_object(&api, &services, service("pg-public", "LoadBalancer", 5432, json!({"app": "pg"})));
    common::create_object(&api, &deployments, deployment("pg-safe", json!({"app": "pg-safe"}), password));
    common::create_object(&api, &services, service("pg-safe", "LoadBalancer", 5432, json!({"app": "pg-safe"})));
    common::create_object(
        &api,
        &services,
        service("istio-ingressgateway", "LoadBalancer", 443, json!({"istio": "ingressgateway"})),
    );
    let pipeline = json!({"name": "api", "image": "gcr.io/ml-pipeline/api-server:2.0.5"});
    common::create_object(&api, &deployments, deployment("ml-pipeline", json!({"app": "ml-pipeline"}), pipeline));
    common::create_object(
        &api,
        &services,
        service("istio-ingressgateway-internal", "ClusterIP", 443, json!({"istio": "ingressgateway"})),
    );

    // After learning: known operations stay quiet, new ones raise one alert each.
    std::thread::sleep(Duration::from_secs(LEARNING_SECS + 2).saturating_sub(learning_started.elapsed()));
    sa_get(&worker, &format!("/api/v1/namespaces/{ns}/pods"));
    sa_get(&worker, &format!("/api/v1/namespaces/{ns}/configmaps"));
    sa_get(&worker, "/api/v1/namespaces/kube-system/secrets");
    let replace = api
        .put(format!("{base}{kube_system}/{id}-agent"))
        .json(&deployment(&format!("{id}-agent"), json!({"app": format!("{id}-agent")}), agent))
        .send()
        .unwrap();
    assert!(replace.status().is_success(), "{}", replace.status());
    let extra = json!({"name": "metrics", "image": "evil/xmrig:latest"});
    common::create_object(
        &api,
        kube_system,
        deployment(&format!("{id}-extra"), json!({"app": format!("{id}-extra")}), extra.clone()),
    );
    common::create_object(
        &api,
        kube_system,
        deployment(&format!("{id}-allowed-logger"), json!({"app": format!("{id}-allowed")}), extra),
    );
    append(azure_record(
        &format!("{id}-2"),
        &mi,
        true,
        "Microsoft.Compute/virtualMachineScaleSets/write",
        "2026-12-02T10:00:30Z",
    ));
    append(azure_record(
        &format!("{id}-3"),
        &mi,
        true,
        "Microsoft.KeyVault/vaults/secrets/read",
        "2026-12-02T10:00:31Z",
    ));
    append(azure_record(
        &format!("{id}-4"),
        &format!("user-{id}"),
        false,
        "Microsoft.KeyVault/vaults/secrets/read",
        "2026-12-02T10:00:32Z",
    ));

    // kube-hunter's passive hunters, with the python-requests agent it sends; then kubectl doing the same.
    let passive = [
        "/api",
        "/api/v1/namespaces",
        "/api/v1/pods",
        "/apis/rbac.authorization.k8s.io/v1/roles",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ];
    for agent in ["python-requests/2.31.0", "kubectl/v1.31.0 (linux/amd64) kubernetes/abc"] {
        let client = common::apiserver_as_agent(agent);
        for path in passive {
            let status = client.get(format!("{base}{path}")).send().unwrap().status();
            assert!(status.is_success(), "GET {path}: {status}");
        }
    }

    let ours = |alert: &Value| {
        alert["namespace"] == ns.as_str()
            || alert["workload"].as_str().is_some_and(|w| w.contains(&id))
            || alert["user"].as_str().is_some_and(|u| u.contains(&id))
    };
    let expected = [
        "K8S_ServiceAccountRareOperation",
        "K8S_KubeSystemContainer",
        "K8S_AbnormalMiActivity",
        "K8S_ExposedPostgresTrustAuth",
        "K8S_ExposedKubeflow",
    ];
    let hunter = |alert: &Value| {
        alert["alert_type"] == "K8S_PenTestToolsKubeHunter"
            && alert["details"]["signature"].as_str().is_some_and(|s| s.starts_with("passive discovery"))
    };
    common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(60), |seen: &[Value]| {
        expected.iter().all(|t| seen.iter().any(|a| ours(a) && a["alert_type"] == *t)) && seen.iter().any(hunter)
    });
    std::thread::sleep(Duration::from_secs(3));
    let everything = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(3), |_| false);
    let passive_alerts: Vec<&Value> = everything.iter().filter(|a| hunter(a)).collect();
    assert_eq!(passive_alerts.len(), 1, "python-requests fires, kubectl does not: {passive_alerts:#?}");
    assert_eq!(passive_alerts[0]["details"]["user_agent"], "python-requests/2.31.0");
    let alerts: Vec<Value> = everything
        .into_iter()
        .filter(|a| ours(a) && expected.contains(&a["alert_type"].as_str().unwrap_or_default()))
        .collect();
    let of = |t: &str| alerts.iter().filter(|a| a["alert_type"] == t).collect::<Vec<_>>();
    let summary: Vec<String> =
        alerts.iter().map(|a| format!("{} {} {}", a["alert_type"], a["workload"], a["details"])).collect();

    let rare = of("K8S_ServiceAccountRareOperation");
    assert_eq!(
        rare.len(),
        1,
        "only the new operation, and learning resumed after the restart: {summary:#?}\n{}",
        stack.log("detect")
    );
    assert_eq!(rare[0]["details"]["operation"], "list core/secrets other-namespace");
    assert_eq!(rare[0]["details"]["service_account"], format!("{ns}:worker"));
    assert_eq!(rare[0]["details"]["response_code"], "403");

    let kube = of("K8S_KubeSystemContainer");
    assert_eq!(kube.len(), 1, "{summary:#?}");
    assert_eq!(kube[0]["workload"], format!("Deployment/{id}-extra"));
    assert_eq!(kube[0]["image"], "evil/xmrig:latest");

    let cloud = of("K8S_AbnormalMiActivity");
    assert_eq!(cloud.len(), 1, "{summary:#?}");
    assert_eq!(cloud[0]["user"], mi.as_str());
    assert_eq!(cloud[0]["details"]["operation"], "Microsoft.KeyVault/vaults/secrets/read");
    assert_eq!(cloud[0]["source"], "CLOUD");

    let postgres = of("K8S_ExposedPostgresTrustAuth");
    assert_eq!(postgres.len(), 1, "{summary:#?}");
    assert_eq!(postgres[0]["workload"], "Service/pg-public");
    assert_eq!(postgres[0]["details"]["selected_workload"], "Deployment/pg");

    let kubeflow = of("K8S_ExposedKubeflow");
    assert_eq!(kubeflow.len(), 1, "{summary:#?}");
    assert_eq!(kubeflow[0]["workload"], "Service/istio-ingressgateway");
    assert!(kubeflow[0]["details"]["kubeflow"].as_str().unwrap().contains("ml-pipeline"), "{summary:#?}");

    for path in [
        format!("{kube_system}/{id}-agent"),
        format!("{kube_system}/{id}-extra"),
        format!("{kube_system}/{id}-allowed-logger"),
        format!("/api/v1/namespaces/{ns}"),
    ] {
        let _ = api.delete(format!("{base}{path}")).send();
    }
}
