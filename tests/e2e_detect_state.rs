//! Detect's state in Kafka: windows open when a detector is SIGKILLed complete on whichever instance gets their
//! partition next, once. Real Kafka; `palisade detect` writes each partition's changed windows to the compacted
//! changelog topic in the transaction that sends its detections and commits its inputs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_schemas::{AuditEvent, Codec, Detection, NodeEvent};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const BURST: &str = "K8S.NODE_ReconnaissanceArtifactsBurst";

fn recon_exec(template: &NodeEvent, container: &str, command: &str, at_ms: i64) -> NodeEvent {
    let mut event = template.clone();
    event.event_id = format!("{container}/{command}/{at_ms}");
    event.timestamp_ms = at_ms;
    event.kernel_time_ns = at_ms * 1_000_000;
    event.executable = Some(format!("/usr/bin/{command}"));
    event.argv = vec![command.to_owned()];
    event.comm = command.to_owned();
    event.container_id = Some(container.to_owned());
    event.net = None;
    event
}

fn template() -> NodeEvent {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/node_event.v1.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn produce(topic: &str, events: &[NodeEvent]) {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let codec = Codec::<NodeEvent>::new().unwrap();
    for event in events {
        let payload = codec.encode(event).unwrap();
        let key = event.partition_key();
        producer.send(BaseRecord::to(topic).key(&key).payload(&payload)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Burst detections (id and container) on the detections topic, as a `read_committed` reader sees them: polled
/// until `done` holds or `wait` passes, then 5 s more (time for a duplicate to show).
fn bursts(topic: &str, wait: Duration, done: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
    detections_of(BURST, topic, wait, done)
}

/// Detections of one type (id and container) on a detections topic, read as `bursts` reads.
fn detections_of(
    alert_type: &str,
    topic: &str,
    wait: Duration,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("restart-reader-{}", common::run_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let codec = Codec::<Detection>::new().unwrap();
    let mut deadline = Instant::now() + wait;
    let mut seen = Vec::new();
    let mut settled = false;
    while Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let detection = codec.decode(message.payload().unwrap_or_default()).unwrap();
            if detection.alert_type == alert_type {
                seen.push((detection.id, detection.container_id.unwrap_or_default()));
            }
        }
        if !settled && done(&seen) {
            settled = true;
            deadline = deadline.min(Instant::now() + Duration::from_secs(5));
        }
    }
    seen
}

/// Offsets a consumer group has committed on `topic`, summed over partitions.
fn committed(group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", group)
        .create()
        .unwrap();
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return 0 };
    let mut partitions = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions.add_partition(topic, partition.id());
    }
    let Ok(offsets) = consumer.committed_offsets(partitions, Duration::from_secs(5)) else { return 0 };
    offsets.elements().iter().filter_map(|e| if let Offset::Offset(n) = e.offset() { Some(n) } else { None }).sum()
}

/// Every record of `topic` (key, payload), committed ones, from the start of each partition to its end.
fn changelog_records(topic: &str) -> Vec<(String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("changelog-reader-{}", common::run_id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let count = partitions(topic);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..count as i32 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let (mut records, mut ended) = (Vec::new(), BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while ended.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => records.push((
                String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                message.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    assert_eq!(ended.len(), count, "{topic}: not every partition read to its end");
    records
}

/// Partitions of `topic` (0 while it does not exist).
fn partitions(topic: &str) -> usize {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return 0 };
    metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| t.partitions().len()).sum()
}

fn wait_committed(group: &str, topic: &str, at_least: i64, logs: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(group, topic) < at_least {
        assert!(Instant::now() < deadline, "inputs not committed (want {at_least}):\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two recon commands committed with their state, SIGKILL, a restart (on `changelog`), two more: the bursts.
fn burst_across_a_kill(stack: &mut common::Stack, container: &str, changelog: &str, first_offset: i64) -> usize {
    let template = template();
    let topic = stack.topic("node_events");
    let group = format!("palisade-{}-detect", stack.run);
    let t = 1_764_000_000_000i64;
    stack.start(&["detect"]);
    produce(&topic, &[recon_exec(&template, container, "whoami", t), recon_exec(&template, container, "id", t + 1000)]);
    // The two commands' offsets are committed, in the transaction that wrote the window to the changelog; then
    // the detector dies without any shutdown.
    wait_committed(&group, &topic, first_offset + 2, || stack.log("detect"));
    stack.kill("detect");
    stack.set("PALISADE__TOPICS__DETECT_CHANGELOG", changelog);
    stack.start(&["detect"]);
    produce(
        &topic,
        &[recon_exec(&template, container, "uname", t + 2000), recon_exec(&template, container, "hostname", t + 3000)],
    );
    let mine = |seen: &[(String, String)]| seen.iter().filter(|(_, c)| c == container).count();
    let seen = bursts(&stack.topic("detections"), Duration::from_secs(20), |seen| mine(seen) > 0);
    stack.kill("detect");
    mine(&seen)
}

#[test]
fn a_recon_window_open_across_a_detector_kill_fires_once() {
    let mut stack = common::Stack::new("detect-restart");
    stack.set("PALISADE__DETECT__KAFKA_STATE", "true");
    stack.set("PALISADE__DETECT__COMMIT_INTERVAL_MS", "200");
    let id = |n: u64| format!("{n:0>64x}");
    let changelog = stack.topic("detect_changelog");
    let resumed = burst_across_a_kill(&mut stack, &id(0xa11), &changelog, 0);
    let log = stack.log("detect");
    assert_eq!(resumed, 1, "the burst completed after the restart fires exactly once:\n{log}");
    assert!(log.contains("shard state restored"), "{log}");
    // Reaching a partition's end is how a restore knows it is done, not an error to log.
    assert!(!log.contains("PartitionEOF"), "{log}");
    // The window was written as a record of its own (`<partition>/<detector>/<key>`), beside its detector's head.
    let records = changelog_records(&changelog);
    let window = records.iter().find(|(key, _)| key.contains(&format!("/{BURST}/")) && key.contains(&id(0xa11)));
    let (key, payload) = window.unwrap_or_else(|| panic!("no record of the window in {changelog}: {records:?}"));
    let state: serde_json::Value = serde_json::from_slice(payload).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert!(state.get("commands").is_some(), "{key}: {state}");
    let head = key.rsplit_once(&format!("/{BURST}/")).map(|(shard, _)| format!("{shard}/{BURST}")).unwrap();
    assert!(records.iter().any(|(key, payload)| *key == head && !payload.is_empty()), "no head {head}");
    // The control: restarted on an empty changelog, the first two commands are gone (committed, not received
    // again), so the same sequence raises nothing. This is what the changelog is for.
    let empty = format!("{changelog}.empty");
    let forgotten = burst_across_a_kill(&mut stack, &id(0xb22), &empty, 4);
    assert_eq!(forgotten, 0, "without the changelog there is no burst");
}

/// `palisade detect` as one more instance of the stack's group, with its own transactional id and log.
fn spawn_detect(stack: &common::Stack, name: &str, extra: &[(&str, &str)]) -> common::KillOnDrop {
    let log = std::fs::File::create(stack.logs.join(format!("{name}.log"))).unwrap();
    let child: Child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("detect")
        .envs(stack.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PALISADE__DETECT__TRANSACTIONAL_ID", format!("palisade-detect-{}-{name}", stack.run))
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("palisade binary starts");
    common::KillOnDrop(child)
}

fn logs(stack: &common::Stack, names: &[&str]) -> String {
    let read = |name: &&str| std::fs::read_to_string(stack.logs.join(format!("{name}.log"))).unwrap_or_default();
    names.iter().map(|name| format!("--- {name}\n{}", read(name))).collect()
}

#[test]
fn three_instances_over_six_partitions_raise_what_one_raises_across_a_kill() {
    let mut stack = common::Stack::new("detect-scale");
    stack.set("PALISADE__DETECT__KAFKA_STATE", "true");
    stack.set("PALISADE__KAFKA__TOPIC_PARTITIONS", "6");
    stack.set("PALISADE__DETECT__COMMIT_INTERVAL_MS", "200");
    let names = ["a", "b", "c", "d", "single"];
    let template = template();
    let topic = stack.topic("node_events");
    let group = format!("palisade-{}-detect", stack.run);
    // Twelve containers: their keys spread over the six partitions.
    let containers: Vec<String> = (0..12u64).map(|n| format!("{:0>64x}", 0xc0 + n)).collect();
    let t = 1_764_000_000_000i64;
    let mut a = spawn_detect(&stack, "a", &[]);
    // Topics exist once the first instance is up; the others join the group after.
    let deadline = Instant::now() + Duration::from_secs(30);
    while partitions(&stack.topic("detect_changelog")) < 6 {
        assert!(Instant::now() < deadline, "detect a did not start:\n{}", logs(&stack, &names));
        assert!(a.0.try_wait().unwrap().is_none(), "detect a exited:\n{}", logs(&stack, &names));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _b = spawn_detect(&stack, "b", &[]);
    let _c = spawn_detect(&stack, "c", &[]);
    // The three share the partitions before any input: a gives some up, b and c get theirs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !["b", "c"].iter().all(|name| logs(&stack, &[name]).contains("partitions assigned")) {
        assert!(Instant::now() < deadline, "b and c got no partition:\n{}", logs(&stack, &names));
        std::thread::sleep(Duration::from_millis(200));
    }
    let first: Vec<NodeEvent> = (containers.iter())
        .flat_map(|c| [recon_exec(&template, c, "whoami", t), recon_exec(&template, c, "id", t + 1000)])
        .collect();
    produce(&topic, &first);
    wait_committed(&group, &topic, first.len() as i64, || logs(&stack, &names));
    // Mid-window another instance joins (live members give partitions up, with their windows) and then one dies
    // (its partitions move with the windows its last transaction wrote).
    let _d = spawn_detect(&stack, "d", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logs(&stack, &["d"]).contains("partitions assigned") {
        assert!(Instant::now() < deadline, "d got no partition:\n{}", logs(&stack, &names));
        std::thread::sleep(Duration::from_millis(200));
    }
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let second: Vec<NodeEvent> = (containers.iter())
        .flat_map(|c| [recon_exec(&template, c, "uname", t + 2000), recon_exec(&template, c, "hostname", t + 3000)])
        .collect();
    produce(&topic, &second);
    let all = |seen: &[(String, String)]| seen.iter().map(|(_, c)| c).collect::<BTreeSet<_>>().len() == 12;
    let scaled = bursts(&stack.topic("detections"), Duration::from_secs(90), all);
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    scaled.iter().for_each(|(id, _)| *per_id.entry(id).or_default() += 1);
    let repeated: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "alert ids repeated on the detections topic: {repeated:?}\n{}", logs(&stack, &names));
    let containers_seen: BTreeSet<&str> = scaled.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(containers_seen.len(), 12, "one burst per container:\n{scaled:?}\n{}", logs(&stack, &names));
    assert_eq!(scaled.len(), 12, "one burst per container:\n{scaled:?}");

    // One instance alone over the same input (its own group, changelog and output): the same alerts.
    let single_group = format!("palisade-{}-single", stack.run);
    let single_detections = format!("{}.single", stack.topic("detections"));
    let single_changelog = format!("{}.single", stack.topic("detect_changelog"));
    let _single = spawn_detect(
        &stack,
        "single",
        &[
            ("PALISADE__KAFKA__GROUP_PREFIX", single_group.as_str()),
            ("PALISADE__TOPICS__DETECTIONS", single_detections.as_str()),
            ("PALISADE__TOPICS__DETECT_CHANGELOG", single_changelog.as_str()),
        ],
    );
    let alone = bursts(&single_detections, Duration::from_secs(60), |seen| seen.len() >= 12);
    let ids = |seen: &[(String, String)]| seen.iter().map(|(id, _)| id.clone()).collect::<BTreeSet<_>>();
    assert_eq!(ids(&scaled), ids(&alone), "three instances and one raise the same alerts:\n{}", logs(&stack, &names));
    // The windows moved: instances other than a restored node-event shards that held state.
    let restored = logs(&stack, &["b", "c", "d"])
        .lines()
        .filter(|l| l.contains("shard state restored") && l.contains("node_events") && !l.contains("detectors=0"))
        .count();
    assert!(restored > 0, "no node-event shard with state moved:\n{}", logs(&stack, &names));
    eprintln!(
        "bursts: {} (ids equal to one instance's); node shards restored with state on b, c, d: {restored}",
        scaled.len()
    );
}

fn discovery_call(verb: &str, uri: &str, resource: &str, namespace: Option<&str>, second: u32) -> AuditEvent {
    let mut object = serde_json::json!({"resource": resource});
    if let Some(namespace) = namespace {
        object["namespace"] = namespace.into();
    }
    let event = serde_json::json!({"kind": "Event", "auditID": format!("{uri}-{second}"), "stage": "ResponseComplete",
        "verb": verb, "requestURI": uri, "user": {"username": "system:serviceaccount:default:default"},
        "userAgent": "python-requests/2.31.0", "sourceIPs": ["10.0.0.9"], "responseStatus": {"code": 200},
        "objectRef": object, "stageTimestamp": format!("2026-12-07T10:00:{second:02}Z")});
    AuditEvent::from_k8s_json(&event, "testbed").unwrap()
}

/// kube-hunter's passive discovery with the pods listed namespace by namespace: the audit topic is keyed by
/// namespace, so its calls land on several partitions (and instances); re-keyed by user they meet again.
#[test]
fn a_discovery_spread_over_namespaces_meets_again_by_user_across_two_instances() {
    let mut stack = common::Stack::new("detect-rekey");
    stack.set("PALISADE__DETECT__KAFKA_STATE", "true");
    stack.set("PALISADE__KAFKA__TOPIC_PARTITIONS", "6");
    stack.set("PALISADE__DETECT__COMMIT_INTERVAL_MS", "200");
    let names = ["a", "b"];
    let _a = spawn_detect(&stack, "a", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while partitions(&stack.topic("detect_rekeyed")) < 6 {
        assert!(Instant::now() < deadline, "detect a did not start:\n{}", logs(&stack, &names));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _b = spawn_detect(&stack, "b", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logs(&stack, &["b"]).contains("partitions assigned") {
        assert!(Instant::now() < deadline, "b got no partition:\n{}", logs(&stack, &names));
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut calls = vec![
        discovery_call("get", "/api", "", None, 0),
        discovery_call("list", "/api/v1/namespaces", "namespaces", None, 1),
        discovery_call("list", "/apis/rbac.authorization.k8s.io/v1/roles", "roles", None, 2),
    ];
    for n in 0..6 {
        let namespace = format!("n-{n}");
        let uri = format!("/api/v1/namespaces/{namespace}/pods");
        calls.push(discovery_call("list", &uri, "pods", Some(&namespace), 3 + n));
    }
    let topic = stack.topic("audit_events");
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let codec = Codec::<AuditEvent>::new().unwrap();
    for call in &calls {
        let (key, payload) = (call.partition_key(), codec.encode(call).unwrap());
        producer.send(BaseRecord::to(&topic).key(&key).payload(&payload)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    // The precondition: the calls are on more than one partition of the audit topic.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("rekey-reader-{}", common::run_id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&[&topic]).unwrap();
    let mut spread = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = 0;
    while read < calls.len() && Instant::now() < deadline {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(200)) {
            spread.insert(message.partition());
            read += 1;
        }
    }
    assert!(spread.len() > 1, "the calls all landed on one partition: {spread:?}");
    let hunter = |seen: &[(String, String)]| !seen.is_empty();
    let found =
        detections_of("K8S_PenTestToolsKubeHunter", &stack.topic("detections"), Duration::from_secs(60), hunter);
    assert_eq!(found.len(), 1, "one passive pattern over {} partitions:\n{}", spread.len(), logs(&stack, &names));
}

/// A member joins while the other's transaction batch holds inputs of partitions it must give up: those inputs
/// are left to the new owner, the rest of the batch commits, and neither instance stalls: every burst is raised
/// once and the group commits every input.
#[test]
fn a_member_joining_while_a_batch_is_open_leaves_its_inputs_to_the_new_owner() {
    let mut stack = common::Stack::new("detect-join");
    stack.set("PALISADE__DETECT__KAFKA_STATE", "true");
    stack.set("PALISADE__KAFKA__TOPIC_PARTITIONS", "6");
    // A long interval: the batch is open when the second member joins.
    stack.set("PALISADE__DETECT__COMMIT_INTERVAL_MS", "20000");
    let names = ["a", "b"];
    let template = template();
    let (node_topic, audit_topic) = (stack.topic("node_events"), stack.topic("audit_events"));
    let group = format!("palisade-{}-detect", stack.run);
    let containers: Vec<String> = (0..12u64).map(|n| format!("{:0>64x}", 0xd0 + n)).collect();
    let t = 1_764_000_000_000i64;
    let _a = spawn_detect(&stack, "a", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logs(&stack, &["a"]).contains("partitions assigned") {
        assert!(Instant::now() < deadline, "a got no partition:\n{}", logs(&stack, &names));
        std::thread::sleep(Duration::from_millis(200));
    }
    let first: Vec<NodeEvent> = (containers.iter())
        .flat_map(|c| [recon_exec(&template, c, "whoami", t), recon_exec(&template, c, "id", t + 1000)])
        .collect();
    produce(&node_topic, &first);
    // Audit events in twelve namespaces: inputs on most audit partitions too (two discovery calls each: no alert).
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let codec = Codec::<AuditEvent>::new().unwrap();
    for n in 0..12 {
        let namespace = format!("ns-{n}");
        let call = discovery_call("list", &format!("/api/v1/namespaces/{namespace}/pods"), "pods", Some(&namespace), n);
        let (key, payload) = (call.partition_key(), codec.encode(&call).unwrap());
        producer.send(BaseRecord::to(&audit_topic).key(&key).payload(&payload)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let _b = spawn_detect(&stack, "b", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logs(&stack, &["a"]).contains("inputs of revoked partitions left to their new owner") {
        assert!(
            Instant::now() < deadline,
            "a gave up no partition with inputs in its batch:\n{}",
            logs(&stack, &names)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let second: Vec<NodeEvent> = (containers.iter())
        .flat_map(|c| [recon_exec(&template, c, "uname", t + 2000), recon_exec(&template, c, "hostname", t + 3000)])
        .collect();
    produce(&node_topic, &second);
    let all = |seen: &[(String, String)]| seen.iter().map(|(_, c)| c).collect::<BTreeSet<_>>().len() == 12;
    let seen = bursts(&stack.topic("detections"), Duration::from_secs(120), all);
    let ids: BTreeSet<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!((ids.len(), seen.len()), (12, 12), "one burst per container, none twice:\n{}", logs(&stack, &names));
    // Neither member stalls: every input is committed.
    wait_committed(&group, &node_topic, (first.len() + second.len()) as i64, || logs(&stack, &names));
    wait_committed(&group, &audit_topic, 12, || logs(&stack, &names));
}
