//! The compose file's five Palisade services, run from the real image by a real Compose (v5, on podman's Docker API)
//! against the testbed's Kafka and OpenSearch through `scripts/testbed.d/compose.override.yml`: every service is
//! ready and passes its healthcheck (the file's, on the port the override gives each service), the image's test
//! trigger run as a compose service raises K8S.NODE_EICAR, and audit events posted to the webhook with the token
//! from its secret raise audit alerts; both arrive on `palisade.alerts` and in the index. Opt-in (`--ignored`): `scripts/compose-tier` installs podman,
//! builds Compose and the image, and runs it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::env;
use serde_json::{Value, json};

const COMPOSE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml");
const OVERRIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testbed.d/compose.override.yml");
const IMAGE: &str = "localhost/palisade:testbed";
const SERVICES: [&str; 5] = ["collect", "audit", "detect", "enrich", "sink"];
/// Each service's metrics port in the override, in the order of `SERVICES`.
const METRICS_PORTS: [u16; 5] = [19491, 19492, 19493, 19494, 19495];
const AUDIT_PORT: &str = "18543";
const INDEX_PREFIX: &str = "palisade-alerts";
const ALERTS_TOPIC: &str = "palisade.alerts";

/// One compose project: its name, the cluster name its alerts carry and its secrets directory. Dropping it takes
/// the project down (and prints its logs when the test failed).
struct Project {
    name: String,
    cluster: String,
    secrets: PathBuf,
}

impl Project {
    fn new() -> Self {
        let run = common::run_id();
        let secrets = std::env::temp_dir().join(format!("palisade-compose-{run}"));
        std::fs::create_dir_all(&secrets).unwrap();
        for name in ["elastic-password", "kibana-password", "sink-password", "audit-webhook-token"] {
            let mut bytes = [0u8; 24];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut bytes))
                .unwrap();
            let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
            std::fs::write(secrets.join(name), hex).unwrap();
        }
        Self { name: format!("palisade-compose-{}", std::process::id()), cluster: format!("compose-{run}"), secrets }
    }

    /// Runs compose, killed after 5 minutes (a podman API that hangs must not hang the tier).
    fn compose_output(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["--kill-after=10", "300"])
            .arg(env("PALISADE_TEST_COMPOSE"))
            .args(["-p", &self.name, "-f", COMPOSE_FILE, "-f", OVERRIDE])
            .args(args)
            .env("PALISADE_IMAGE", IMAGE)
            .env("PALISADE_CLUSTER", &self.cluster)
            .env("PALISADE_SECRETS_DIR", &self.secrets)
            .env("PALISADE_TEST_COMPOSE_AUDIT_PORT", AUDIT_PORT)
            .output()
            .expect("the compose binary runs")
    }

    /// Runs compose with `args`, failing with its output unless it succeeds; returns its standard output.
    fn compose(&self, args: &[&str]) -> String {
        let output = self.compose_output(args);
        assert!(
            output.status.success(),
            "compose {args:?}: {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn logs(&self) -> String {
        let output = self.compose_output(&["logs", "--no-color", "--tail", "60"]);
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- compose logs\n{}", self.logs());
        }
        let output = self.compose_output(&["down", "--timeout", "10"]);
        if !output.status.success() {
            eprintln!("compose down: {}", String::from_utf8_lossy(&output.stderr));
        }
        let _ = std::fs::remove_dir_all(&self.secrets);
    }
}

/// Waits until `url` answers 200; returns the last status or error when the time runs out.
fn wait_for_ok(url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client.get(url).send() {
            Ok(response) if response.status() == 200 => return Ok(()),
            Ok(response) => format!("{} {}", response.status(), response.text().unwrap_or_default()),
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().expect("podman runs")
}

fn post_audit(client: &reqwest::blocking::Client, body: &Value, token: Option<&str>) -> u16 {
    let mut request = client.post(format!("https://127.0.0.1:{AUDIT_PORT}/audit/webhook")).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().expect("the compose audit webhook answers").status().as_u16()
}

/// The alert types of `cluster` on the alerts topic (read committed, from its start) once `done` holds for them or
/// the time runs out. Records of other tests that are not JSON alerts (the topic is shared) are passed over.
fn alert_types_on_topic(
    cluster: &str,
    timeout: Duration,
    done: impl Fn(&BTreeSet<String>) -> bool,
) -> BTreeSet<String> {
    use rdkafka::Message;
    let consumer = common::committed_reader(ALERTS_TOPIC);
    let deadline = Instant::now() + timeout;
    let mut types = BTreeSet::new();
    while Instant::now() < deadline && !done(&types) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200))
            && let Some(Ok(alert)) = message.payload().map(serde_json::from_slice::<Value>)
            && alert["cluster"] == cluster
            && let Some(kind) = alert["alert_type"].as_str()
        {
            types.insert(kind.to_owned());
        }
    }
    types
}

fn token(secrets: &Path) -> String {
    std::fs::read_to_string(secrets.join("audit-webhook-token")).unwrap()
}

#[test]
#[ignore = "needs podman, Compose and the image: scripts/compose-tier"]
fn the_compose_services_run_from_the_image_and_raise_node_and_audit_alerts() {
    let project = Project::new();
    let started = Instant::now();
    let mut up = vec!["up", "--detach", "--no-deps", "--no-build"];
    up.extend(SERVICES);
    project.compose(&up);
    for (service, port) in SERVICES.iter().zip(METRICS_PORTS) {
        if let Err(last) = wait_for_ok(&format!("http://127.0.0.1:{port}/readyz"), Duration::from_secs(180)) {
            panic!("{service} is not ready on port {port}: {last}");
        }
    }
    eprintln!("compose: the five services ready in {:.1} s", started.elapsed().as_secs_f64());

    // The healthcheck of each service, run inside its container as the engine runs it: until it passes, within
    // the time its retries give it (a detect restoring a partition's state answers 503 meanwhile).
    for service in SERVICES {
        let id = project.compose(&["ps", "--quiet", service]);
        let id = id.trim();
        assert!(!id.is_empty(), "no container for {service}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let check = podman(&["healthcheck", "run", id]);
            if check.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{service}'s healthcheck: {} {}{}",
                check.status,
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    // The audit webhook: refused without the token from its secret, accepted with it. (The refusals carry an
    // empty list: the webhook answers 401 before reading a body, and a client still writing a large one sees
    // the connection close.)
    let client = reqwest::blocking::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let empty = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []});
    assert_eq!(post_audit(&client, &empty, None), 401, "a request without the token");
    assert_eq!(post_audit(&client, &empty, Some("not-the-token")), 401, "a request with another token");
    let batch = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": common::corpus_audit_events()});
    assert_eq!(post_audit(&client, &batch, Some(token(&project.secrets).trim())), 200, "the API server's request");

    // The image's harmless trigger, as a compose user runs it: a one-off container of a Palisade service.
    let trigger = Instant::now();
    project.compose(&["run", "--rm", "--no-deps", "-T", "enrich", "test-alert"]);

    let cluster = project.cluster.clone();
    let node_query = json!({"bool": {"must": [
        {"term": {"rule.id": "K8S.NODE_EICAR"}},
        {"term": {"orchestrator.cluster.name": cluster}}
    ]}});
    let node = common::wait_for_document(INDEX_PREFIX, node_query, Duration::from_secs(180))
        .unwrap_or_else(|| panic!("no K8S.NODE_EICAR alert of cluster {cluster} indexed"));
    eprintln!("compose: K8S.NODE_EICAR indexed {:.1} s after the trigger", trigger.elapsed().as_secs_f64());
    // The collector shares the host's UTS namespace: the alert names this host.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(node["host"]["name"], host.trim(), "the node's name: {node}");

    let audit_query = json!({"bool": {
        "must": [{"term": {"orchestrator.cluster.name": cluster}}, {"prefix": {"rule.id": "K8S_"}}]
    }});
    let audit = common::wait_for_document(INDEX_PREFIX, audit_query, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no audit alert of cluster {cluster} indexed"));
    eprintln!("compose: audit alert {} indexed", audit["rule"]["id"]);

    // The same alerts on the SOC topic.
    let types = alert_types_on_topic(&cluster, Duration::from_secs(60), |types| {
        types.contains("K8S.NODE_EICAR") && types.iter().any(|kind| kind.starts_with("K8S_"))
    });
    assert!(types.contains("K8S.NODE_EICAR"), "alerts of {cluster} on {ALERTS_TOPIC}: {types:?}");
    assert!(types.iter().any(|kind| kind.starts_with("K8S_")), "alerts of {cluster} on {ALERTS_TOPIC}: {types:?}");

    // For the record: what each service takes after the run.
    let stats = podman(&["stats", "--no-stream", "--format", "{{.Name}} cpu={{.CPUPerc}} mem={{.MemUsage}}"]);
    for line in String::from_utf8_lossy(&stats.stdout).lines().filter(|line| line.starts_with(&project.name)) {
        eprintln!("compose: {line}");
    }
}
