//! Helpers for the end-to-end tests: the real services `scripts/testbed up` started (their addresses come from
//! `scripts/testbed env`), the `palisade` binary as separate stage processes, and readers for the alerts topic
//! and the search index.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::{Value, json};

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the real services with `scripts/testbed up` and `eval \"$(scripts/testbed env)\"`"
        )
    })
}

/// A unique suffix so runs do not read each other's topics or indices.
pub fn run_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
    )
}

/// The corpus's audit events (Falco's test traces, as the API server logged them).
pub fn corpus_audit_events() -> Vec<serde_json::Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/falco_k8s_audit_traces/all_events.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["event"].clone())
        .filter(|event| event.get("verb").is_some())
        .collect()
}

/// Environment that points a palisade process at the testbed with per-run topics.
pub struct Stack {
    pub run: String,
    pub envs: Vec<(String, String)>,
    pub index_prefix: String,
    children: Vec<(String, Child)>,
    pub logs: PathBuf,
}

impl Stack {
    pub fn new(name: &str) -> Self {
        let run = format!("{name}-{}", run_id());
        let index_prefix = format!("palisade-test-{}", run.to_lowercase());
        let mut envs = vec![
            ("PALISADE__CLUSTER".into(), "testbed".into()),
            ("PALISADE__KAFKA__BOOTSTRAP_SERVERS".into(), env("PALISADE_TEST_KAFKA")),
            ("PALISADE__KAFKA__GROUP_PREFIX".into(), format!("palisade-{run}")),
            ("PALISADE__SINK__ALERTS_FORMAT".into(), "json".into()),
            ("PALISADE__SINK__OPENSEARCH__URL".into(), env("PALISADE_TEST_OPENSEARCH")),
            ("PALISADE__SINK__OPENSEARCH__INDEX_PREFIX".into(), index_prefix.clone()),
            ("PALISADE__SINK__OPENSEARCH__BATCH_MAX_WAIT_MS".into(), "50".into()),
            // The fixtures' alerts were raised in 2025: a retention would delete their indices at a restart.
            ("PALISADE__SINK__OPENSEARCH__RETENTION_DAYS".into(), "0".into()),
            ("RUST_LOG".into(), "info".into()),
            ("PALISADE__SINK__TRANSACTIONAL_ID".into(), format!("palisade-sink-{run}")),
            ("PALISADE__DETECT__TRANSACTIONAL_ID".into(), format!("palisade-detect-{run}")),
        ];
        for topic in [
            "node_events",
            "audit_events",
            "cloud_activity",
            "detections",
            "enriched",
            "alerts",
            "dead_letter",
            "cluster_state",
            "detect_changelog",
            "detect_rekeyed",
        ] {
            envs.push((format!("PALISADE__TOPICS__{}", topic.to_uppercase()), format!("t.{run}.{topic}")));
        }
        let logs = std::env::temp_dir().join(format!("palisade-e2e-{run}"));
        std::fs::create_dir_all(&logs).unwrap();
        Self { run, envs, index_prefix, children: Vec::new(), logs }
    }

    pub fn topic(&self, name: &str) -> String {
        format!("t.{}.{name}", self.run)
    }

    /// Points `palisade audit` at the address, certificate, key and token the testbed's API server uses.
    pub fn with_testbed_webhook(&mut self) {
        let pki = env("PALISADE_TEST_PKI");
        self.set("PALISADE__AUDIT__LISTEN_ADDR", &env("PALISADE_TEST_AUDIT_WEBHOOK_ADDR"));
        self.set("PALISADE__AUDIT__TLS_CERT_PATH", &format!("{pki}/audit-webhook.crt"));
        self.set("PALISADE__AUDIT__TLS_KEY_PATH", &format!("{pki}/audit-webhook.key"));
        self.set("PALISADE__AUDIT__TOKEN_FILE", &format!("{pki}/audit-webhook.token"));
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.into(), value.into()));
    }

    /// Starts `palisade <args>` with this stack's environment; its stderr goes to a log file.
    pub fn spawn(&mut self, args: &[&str]) {
        let name = args.join("-");
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("palisade binary starts");
        self.children.push((name, child));
    }

    /// Starts `palisade <stage>` for each stage, gives them time to connect, and fails if one already exited.
    pub fn start(&mut self, stages: &[&str]) {
        for stage in stages {
            self.spawn(&[stage]);
        }
        std::thread::sleep(Duration::from_secs(3));
        self.assert_running();
    }

    pub fn assert_running(&mut self) {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default();
                panic!("palisade {name} exited early with {status}:\n{log}");
            }
        }
    }

    /// SIGKILLs `palisade <name>` (no shutdown, no last commit) and waits for it to die.
    pub fn kill(&mut self, name: &str) {
        let position = self.children.iter().position(|(n, _)| n == name).expect("a child of that name");
        let (_, mut child) = self.children.remove(position);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERMs `palisade <name>` (a clean shutdown: positions and offsets saved) and waits until it exits.
    pub fn stop(&mut self, name: &str) {
        let position = self.children.iter().position(|(n, _)| n == name).expect("a child of that name");
        let (_, mut child) = self.children.remove(position);
        // SAFETY: sending SIGTERM to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let stopped = wait_for_exit(&mut child, Duration::from_secs(30));
        assert!(stopped.is_some(), "palisade {name} did not stop within 30 s of SIGTERM");
    }

    /// The process id of `palisade <name>`.
    pub fn pid(&self, name: &str) -> u32 {
        self.children.iter().find(|(n, _)| n == name).map(|(_, child)| child.id()).expect("a child of that name")
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // SAFETY: sending SIGTERM to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        for (_, child) in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh consumer group reading `topic` from the start, committed records only (what a SOC consumer sees).
pub fn committed_reader(topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("e2e-reader-{}", run_id()))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Waits for a record of type `T` (Avro) on `topic`, read from its start by a fresh group, that satisfies `pred`.
pub fn wait_for_record<T: palisade_schemas::Record>(
    topic: &str,
    timeout: Duration,
    pred: impl Fn(&T) -> bool,
) -> Option<T> {
    let consumer = committed_reader(topic);
    let codec = palisade_schemas::Codec::<T>::new().unwrap();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else { continue };
        let record = codec.decode(message.payload().unwrap_or_default()).expect("the topic carries these records");
        if pred(&record) {
            return Some(record);
        }
    }
    None
}

/// Waits for a NodeEvent on `topic` that satisfies `pred`.
pub fn wait_for_node_event(
    topic: &str,
    timeout: Duration,
    pred: impl Fn(&palisade_schemas::NodeEvent) -> bool,
) -> Option<palisade_schemas::NodeEvent> {
    wait_for_record(topic, timeout, pred)
}

/// Waits for an AuditEvent on `topic` that satisfies `pred`.
pub fn wait_for_audit_event(
    topic: &str,
    timeout: Duration,
    pred: impl Fn(&palisade_schemas::AuditEvent) -> bool,
) -> Option<palisade_schemas::AuditEvent> {
    wait_for_record(topic, timeout, pred)
}

/// Waits for a JSON alert on `topic` (read_committed) that satisfies `pred`.
pub fn wait_for_alert(
    topic: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<(serde_json::Value, Instant)> {
    let consumer = committed_reader(topic);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let Some(payload) = message.payload() else {
                continue;
            };
            let value: serde_json::Value =
                serde_json::from_slice(payload).expect("alerts topic carries JSON in this test");
            if pred(&value) {
                return Some((value, Instant::now()));
            }
        }
    }
    None
}

/// Searches the alert indices until a document matches `query` (OpenSearch query DSL) or the time runs out.
pub fn wait_for_document(index_prefix: &str, query: serde_json::Value, timeout: Duration) -> Option<serde_json::Value> {
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/{index_prefix}-*/_search", env("PALISADE_TEST_OPENSEARCH"));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let response = client.post(&url).json(&serde_json::json!({"query": query})).send();
        if let Ok(response) = response
            && let Ok(body) = response.json::<serde_json::Value>()
            && let Some(hit) = body.pointer("/hits/hits/0/_source")
        {
            return Some(hit.clone());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

pub fn count_documents(index_prefix: &str, query: serde_json::Value) -> u64 {
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/{index_prefix}-*/_count", env("PALISADE_TEST_OPENSEARCH"));
    let body: serde_json::Value =
        client.post(&url).json(&serde_json::json!({"query": query})).send().unwrap().json().unwrap();
    body["count"].as_u64().unwrap_or(0)
}

/// POSTs `body` to `path` on the testbed API server, failing with its answer unless it succeeds; returns the
/// object it stored.
pub fn create_object(api: &reqwest::blocking::Client, path: &str, body: serde_json::Value) -> serde_json::Value {
    let response = api.post(format!("{}{path}", env("PALISADE_TEST_APISERVER"))).json(&body).send().unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert!(status.is_success(), "POST {path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// Creates a namespace through the testbed API server, failing with the server's answer.
pub fn create_namespace(api: &reqwest::blocking::Client, name: &str) {
    let created = api
        .post(format!("{}/api/v1/namespaces", env("PALISADE_TEST_APISERVER")))
        .json(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .send()
        .unwrap();
    let status = created.status();
    assert!(status.is_success(), "namespace {name}: {status} {}", created.text().unwrap_or_default());
}

/// A client of the testbed kube-apiserver authenticated with the admin client certificate.
pub fn apiserver() -> reqwest::blocking::Client {
    apiserver_from(None)
}

/// The same client, connecting from a chosen local address (127.0.0.x), so audit events carry that source IP.
pub fn apiserver_from(local: Option<std::net::IpAddr>) -> reqwest::blocking::Client {
    apiserver_client(local, None)
}

/// The admin client sending a chosen User-Agent (what another tool would send).
pub fn apiserver_as_agent(agent: &str) -> reqwest::blocking::Client {
    apiserver_client(None, Some(agent))
}

fn apiserver_client(local: Option<std::net::IpAddr>, agent: Option<&str>) -> reqwest::blocking::Client {
    let pki = PathBuf::from(env("PALISADE_TEST_PKI"));
    let mut identity = std::fs::read(pki.join("admin.crt")).unwrap();
    identity.extend(std::fs::read(pki.join("admin.key")).unwrap());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt")).unwrap()).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .local_address(local)
        .user_agent(agent.unwrap_or(concat!("palisade-tests/", env!("CARGO_PKG_VERSION"))))
        .build()
        .unwrap()
}

/// Sends detections to a detections topic, Avro-encoded and all with one key: one partition, so the alerts come
/// out in the order the detections went in. Each send waits for the broker.
pub struct DetectionSender {
    producer: rdkafka::producer::BaseProducer,
    codec: palisade_schemas::Codec<palisade_schemas::Detection>,
    topic: String,
}

impl DetectionSender {
    pub fn new(topic: &str) -> Self {
        let producer = ClientConfig::new().set("bootstrap.servers", env("PALISADE_TEST_KAFKA")).create().unwrap();
        Self { producer, codec: palisade_schemas::Codec::new().unwrap(), topic: topic.to_owned() }
    }

    pub fn send(&self, detection: &palisade_schemas::Detection) {
        use rdkafka::producer::{BaseRecord, Producer};
        let payload = self.codec.encode(detection).unwrap();
        self.producer.send(BaseRecord::to(&self.topic).key("one").payload(&payload)).map_err(|(e, _)| e).unwrap();
        self.producer.flush(Duration::from_secs(10)).unwrap();
    }
}

/// Reads the dead-letter `topic` from the start until `count` records or the time runs out: each record's payload
/// (the input as it came) and its `palisade.error` header (the reason).
pub fn read_dead_letters(topic: &str, count: usize, timeout: Duration) -> Vec<(Vec<u8>, String)> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("e2e-dlq-{}", run_id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + timeout;
    let mut dead = Vec::new();
    while dead.len() < count && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let reason = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "palisade.error").and_then(|h| h.value.map(<[u8]>::to_vec)))
                .unwrap_or_default();
            let payload = message.payload().unwrap_or_default().to_vec();
            dead.push((payload, String::from_utf8_lossy(&reason).into_owned()));
        }
    }
    dead
}

/// Reads JSON alerts from `topic` (read_committed, from the start) until `done` says enough or time runs out.
pub fn collect_alerts(
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let consumer = committed_reader(topic);
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while Instant::now() < deadline && !done(&seen) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200))
            && let Some(payload) = message.payload()
        {
            seen.push(serde_json::from_slice(payload).expect("alerts topic carries JSON in these tests"));
        }
    }
    seen
}

/// Kills the child if the test fails first, so no process outlives it.
pub struct KillOnDrop(pub Child);

/// How `child` exited, once it has, if within `timeout`.
pub fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `palisade run --quiet --alerts-file <alerts>` with `envs` (the audit webhook on a free port) and waits
/// until it says it is running; its stderr is echoed with a `run: ` prefix. Returns the child and that line.
pub fn start_embedded_run(alerts: &std::path::Path, envs: &[(&str, &str)]) -> (KillOnDrop, String) {
    let mut run = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["run", "--quiet", "--alerts-file"])
            .arg(alerts)
            .env("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = run.0.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("palisade: running") {
                let _ = ready_tx.send(line.clone());
            }
            eprintln!("run: {line}");
        }
    });
    let ready = ready_rx.recv_timeout(Duration::from_secs(30)).expect("palisade run starts");
    (run, ready)
}

/// The alerts written to an alerts file so far (a line being written is skipped).
pub fn alerts(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// How many alerts of each type.
pub fn types_in(alerts: &[serde_json::Value]) -> std::collections::BTreeMap<String, usize> {
    let mut types = std::collections::BTreeMap::new();
    for alert in alerts {
        *types.entry(alert["alert_type"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    types
}

/// `palisade run` with node collection on, its windowed state in `state`, one alert per detection (no
/// deduplication: what each scenario raised is what the node tests count).
pub fn start_node_run(alerts: &std::path::Path, state: &std::path::Path) -> KillOnDrop {
    let state = state.display().to_string();
    let envs = [
        ("PALISADE__METRICS_LISTEN_ADDR", "127.0.0.1:0"),
        ("PALISADE__DETECT__STATE_PATH", state.as_str()),
        ("PALISADE__ENRICH__DEDUP_WINDOW_SECS", "0"),
    ];
    let (run, ready) = start_embedded_run(alerts, &envs);
    assert!(ready.contains("node collection on"), "{ready}");
    run
}

/// A directory of stand-in programs and, once made, a kubelet-style container cgroup; both removed on drop.
pub struct Sandbox {
    pub dir: PathBuf,
    cgroup_dirs: Vec<String>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for dir in self.cgroup_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs a shell script; its output is discarded (what it does is what the tests look at).
pub fn sh(script: &str) {
    let status = Command::new("/bin/sh").args(["-c", script]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(status.is_ok(), "{script}");
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = PathBuf::from(format!("/tmp/palisade-scenarios-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("home/.ssh")).unwrap();
        Self { dir, cgroup_dirs: Vec::new() }
    }

    /// A harmless program with a tool's name: a copy of `original`.
    pub fn stand_in(&self, name: &str, original: &str) -> String {
        let target = self.dir.join("bin").join(name);
        std::fs::copy(original, &target).unwrap();
        target.display().to_string()
    }

    /// A kubelet/containerd-style cgroup for one container of the pod with this UID; returns its `cgroup.procs`.
    pub fn container_cgroup(&mut self, pod_uid: &str) -> String {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find(|p| std::path::Path::new(p).join("cgroup.procs").exists())
            .expect("a cgroup v2 hierarchy");
        let container_id = format!("{:0>64x}", u64::from(std::process::id()) * 104_729 + 0x5ce);
        let pod = format!("kubepods-besteffort-pod{}.slice", pod_uid.replace('-', "_"));
        self.cgroup_dirs = vec![
            format!("{root}/kubepods.slice"),
            format!("{root}/kubepods.slice/kubepods-besteffort.slice"),
            format!("{root}/kubepods.slice/kubepods-besteffort.slice/{pod}"),
            format!("{root}/kubepods.slice/kubepods-besteffort.slice/{pod}/cri-containerd-{container_id}.scope"),
        ];
        for dir in &self.cgroup_dirs {
            std::fs::create_dir_all(dir).unwrap();
        }
        format!("{}/cgroup.procs", self.cgroup_dirs[3])
    }
}

pub fn ok(response: reqwest::blocking::Response, what: &str) -> Value {
    let status = response.status();
    let body = response.text().unwrap_or_default();
    assert!(status.is_success(), "{what}: {status} {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Creates a pod and reports its containers started with the given IDs (what the kubelet would write).
/// Creates a pod and marks it started, with a container ID per container (no kubelet runs one here).
pub fn create_started_pod(
    api: &reqwest::blocking::Client,
    namespace: &str,
    name: &str,
    owner: Option<&str>,
    containers: &[(&str, &str, &str)],
) -> String {
    let server = env("PALISADE_TEST_APISERVER");
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, "team": "shop"}},
        "spec": {"containers": containers.iter().map(|(c, image, _)| json!({"name": c, "image": image}))
            .collect::<Vec<_>>()}});
    if let Some(owner) = owner {
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
            "uid": "7f6d1c1e-0000-4000-8000-000000000001", "controller": true}]);
    }
    let created = ok(api.post(format!("{server}/api/v1/namespaces/{namespace}/pods")).json(&pod).send().unwrap(), name);
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(c, image, id)| {
            json!({"name": c, "image": image, "imageID": "", "containerID": format!("containerd://{id}"),
                "ready": true, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": "2026-12-02T10:00:00Z"}}})
        })
        .collect();
    ok(
        api.patch(format!("{server}/api/v1/namespaces/{namespace}/pods/{name}/status"))
            .header("Content-Type", "application/merge-patch+json")
            .body(json!({"status": {"phase": "Running", "containerStatuses": statuses}}).to_string())
            .send()
            .unwrap(),
        &format!("{name} status"),
    );
    created["metadata"]["uid"].as_str().unwrap().to_owned()
}

/// A service account bound to the shipped `palisade-enrich` ClusterRole's rules, and a token for it.
/// A token of a service account bound to a copy of the shipped `palisade-enrich` ClusterRole.
pub fn enrich_token(api: &reqwest::blocking::Client, namespace: &str, run: &str) -> String {
    let server = env("PALISADE_TEST_APISERVER");
    let rbac =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/base/rbac.yaml"))
            .unwrap();
    let shipped = serde_yaml::Deserializer::from_str(&rbac)
        .map(|document| serde_yaml::with::singleton_map_recursive::deserialize::<Value, _>(document).unwrap())
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "palisade-enrich")
        .expect("rbac.yaml ships the palisade-enrich ClusterRole");
    let role = format!("palisade-enrich-{run}");
    let rbac_api = format!("{server}/apis/rbac.authorization.k8s.io/v1");
    ok(
        api.post(format!("{rbac_api}/clusterroles"))
            .json(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": role}, "rules": shipped["rules"]}))
            .send()
            .unwrap(),
        "cluster role",
    );
    ok(
        api.post(format!("{server}/api/v1/namespaces/{namespace}/serviceaccounts"))
            .json(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "palisade-enrich"}}))
            .send()
            .unwrap(),
        "service account",
    );
    ok(
        api.post(format!("{rbac_api}/clusterrolebindings"))
            .json(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": role},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": "palisade-enrich", "namespace": namespace}]}))
            .send()
            .unwrap(),
        "cluster role binding",
    );
    let token = ok(
        api.post(format!("{server}/api/v1/namespaces/{namespace}/serviceaccounts/palisade-enrich/token"))
            .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600}}))
            .send()
            .unwrap(),
        "token request",
    );
    token["status"]["token"].as_str().unwrap().to_owned()
}

/// Publishes one Avro record of type `T` to `topic` and waits until the broker has it.
pub fn send_record<T: palisade_schemas::Record>(topic: &str, key: &str, record: &T) {
    use rdkafka::producer::{BaseRecord, Producer};
    let producer: rdkafka::producer::BaseProducer =
        ClientConfig::new().set("bootstrap.servers", env("PALISADE_TEST_KAFKA")).create().unwrap();
    let payload = palisade_schemas::Codec::<T>::new().unwrap().encode(record).unwrap();
    producer.send(BaseRecord::to(topic).key(key).payload(&payload)).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Writes a palisade.toml in `dir` whose `[enrich.kubernetes]` reaches the testbed API server with an
/// `enrich_token` (its service account in `namespace`): `before` goes above that table, `after` inside it.
pub fn enrich_kubernetes_config(
    dir: &std::path::Path,
    api: &reqwest::blocking::Client,
    (namespace, run): (&str, &str),
    (before, after): (&str, &str),
) -> PathBuf {
    let token = dir.join("token");
    std::fs::write(&token, enrich_token(api, namespace, run)).unwrap();
    let config = dir.join("palisade.toml");
    let text = format!(
        "{before}[enrich.kubernetes]\napi_server = \"{}\"\ntoken_path = \"{}\"\nca_path = \"{}/ca.crt\"\n{after}",
        env("PALISADE_TEST_APISERVER"),
        token.display(),
        env("PALISADE_TEST_PKI"),
    );
    std::fs::write(&config, text).unwrap();
    config
}
