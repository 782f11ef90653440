//! The cluster-state table end to end, on the real API server and Kafka: objects created before Palisade starts
//! reach the compacted `palisade.cluster.state` topic through enrich's list/watch (kube's runtime watcher), and a
//! detect process started after reads them: a node event in a pod no audit event named gets that pod's context,
//! and a LoadBalancer created in front of a database that predates Palisade completes the exposure join. A deleted
//! pod leaves a tombstone (a null value) on the topic, and a topic an earlier release made with the delete policy
//! is compacted.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use palisade_schemas::{AuditEvent, ClusterObject, Codec, Detection, NodeEvent};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use serde_json::{Value, json};

/// The topic as a table (key → the newest record, `None` for a tombstone), read from its start until `done` holds
/// or the time runs out.
fn read_state(
    topic: &str,
    timeout: Duration,
    done: impl Fn(&BTreeMap<String, Option<ClusterObject>>) -> bool,
) -> BTreeMap<String, Option<ClusterObject>> {
    let consumer = common::committed_reader(topic);
    let codec = Codec::<ClusterObject>::new().unwrap();
    let mut table = BTreeMap::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !done(&table) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else { continue };
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let value = message.payload().map(|payload| codec.decode(payload).expect("the topic carries ClusterObjects"));
        table.insert(key, value);
    }
    table
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn objects_that_predate_palisade_reach_detect_through_the_cluster_state_topic() {
    let mut stack = common::Stack::new("cstate");
    let run = stack.run.clone();
    let namespace = format!("cs-{}", run.replace('-', "").chars().rev().take(12).collect::<String>());
    let api = common::apiserver();
    let server = common::env("PALISADE_TEST_APISERVER");
    common::create_namespace(&api, &namespace);
    let container = format!("{:064x}", u128::from(std::process::id()) << 32 | 0xc5);
    let pod_uid = common::create_started_pod(
        &api,
        &namespace,
        "web-7d4b9-x2x",
        Some("web-7d4b9"),
        &[("app", "shop/web:1.2", &container)],
    );
    // A database that trusts every client, created before Palisade: no audit event Palisade sees names it.
    common::create_object(
        &api,
        &format!("/apis/apps/v1/namespaces/{namespace}/deployments"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pg"},
            "spec": {"selector": {"matchLabels": {"app": "pg"}},
            "template": {"metadata": {"labels": {"app": "pg"}}, "spec": {"containers": [{"name": "db",
            "image": "postgres:16", "env": [{"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"}]}]}}}}),
    );

    let dir = tempfile::tempdir().unwrap();
    let config = common::enrich_kubernetes_config(dir.path(), &api, (&namespace, &run), ("", ""));
    stack.set("PALISADE_CONFIG", config.to_str().unwrap());
    // As an earlier release created it: the default (delete) policy, and a setting of the operator's own.
    let topic = stack.topic("cluster_state");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let old = NewTopic::new(&topic, 3, TopicReplication::Fixed(1)).set("retention.ms", "86400000");
    let created = runtime.block_on(admin.create_topics(&[old], &AdminOptions::new())).unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    stack.start(&["enrich"]);
    let described = runtime
        .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(&topic)], &AdminOptions::new()))
        .unwrap()
        .remove(0)
        .unwrap();
    let setting = |name: &str| described.get(name).and_then(|entry| entry.value.clone());
    assert_eq!(setting("cleanup.policy").as_deref(), Some("compact"), "the existing topic is compacted now");
    assert_eq!(setting("retention.ms").as_deref(), Some("86400000"), "the operator's setting is kept");
    assert_eq!(setting("segment.ms").as_deref(), Some("600000"), "and a new topic's compaction settings added");

    let pod_key = format!("testbed/Pod/{namespace}/web-7d4b9-x2x");
    let database_key = format!("testbed/Deployment/{namespace}/pg");
    let written =
        |table: &BTreeMap<String, Option<ClusterObject>>, key: &str| table.get(key).is_some_and(Option::is_some);
    let table = read_state(&topic, Duration::from_secs(60), |t| written(t, &pod_key) && written(t, &database_key));
    let Some(Some(pod)) = table.get(&pod_key) else {
        panic!("the pod never reached {topic}: {:?}\n{}", table.keys().collect::<Vec<_>>(), stack.log("enrich"))
    };
    assert_eq!(
        (pod.uid.as_str(), pod.resource.as_str(), pod.namespace.as_deref()),
        (pod_uid.as_str(), "pods", Some(namespace.as_str()))
    );
    let object: Value = serde_json::from_str(&pod.object).unwrap();
    assert!(object.pointer("/metadata/managedFields").is_none(), "managedFields are dropped");
    assert_eq!(
        object.pointer("/status/containerStatuses/0/containerID").and_then(Value::as_str),
        Some(format!("containerd://{container}").as_str())
    );
    assert!(written(&table, &database_key), "the deployment reached the topic too");

    let fixture =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/node_event.v2.json")).unwrap();
    let mut event: NodeEvent = serde_json::from_str(&fixture).unwrap();
    event.event_id = format!("{run}/eicar");
    event.node = "cstate-node".into();
    event.timestamp_ms = now_ms();
    event.executable = Some("/tmp/palisade_alerttest_5f3c9e".into());
    event.comm = "palisade_alertt".into();
    event.argv = vec!["/tmp/palisade_alerttest_5f3c9e".into()];
    event.ancestry.clear();
    // What only the table can say: the collector knew the pod UID and container, not the pod.
    (event.pod_uid, event.container_id) = (Some(pod_uid.clone()), Some(container[..12].to_owned()));
    (event.pod_name, event.pod_namespace, event.image, event.container_name) = (None, None, None, None);
    common::send_record(&stack.topic("node_events"), "cstate-node/eicar", &event);
    // Detect starts after, the event already waiting: it reads the whole topic before its first input, so the
    // event finds its pod (following the topic alongside would race the input).
    stack.start(&["detect"]);
    let detections = stack.topic("detections");
    let eicar = common::wait_for_record::<Detection>(&detections, Duration::from_secs(60), |d| {
        d.alert_type == "K8S.NODE_EICAR" && d.pod_uid.as_deref() == Some(pod_uid.as_str())
    })
    .unwrap_or_else(|| panic!("no K8S.NODE_EICAR for the pod:\n{}", stack.log("detect")));
    assert_eq!(eicar.namespace.as_deref(), Some(namespace.as_str()), "detect knew the pod from the table");
    assert_eq!(eicar.pod.as_deref(), Some("web-7d4b9-x2x"));
    assert_eq!(eicar.workload.as_deref(), Some("ReplicaSet/web-7d4b9"));
    assert_eq!(eicar.image.as_deref(), Some("shop/web:1.2"));

    // A LoadBalancer in front of the database (the audit event of its create): the join finds the deployment.
    let service = json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "pg-public", "namespace": namespace},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 5432}], "selector": {"app": "pg"}}});
    let audit = AuditEvent::from_k8s_json(
        &json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": format!("{run}-svc"),
            "stage": "ResponseComplete", "verb": "create", "requestURI": format!("/api/v1/namespaces/{namespace}/services"),
            "user": {"username": "dev"}, "sourceIPs": ["10.0.0.9"],
            "objectRef": {"resource": "services", "namespace": namespace, "name": "pg-public", "apiVersion": "v1"},
            "responseStatus": {"code": 201}, "requestObject": service, "responseObject": service,
            "requestReceivedTimestamp": "2026-12-07T10:00:00.000000Z", "stageTimestamp": "2026-12-07T10:00:00.100000Z"}),
        "testbed",
    )
    .unwrap();
    common::send_record(&stack.topic("audit_events"), &audit.partition_key(), &audit);
    let exposed = common::wait_for_record::<Detection>(&detections, Duration::from_secs(60), |d| {
        d.alert_type == "K8S_ExposedPostgresTrustAuth" && d.namespace.as_deref() == Some(namespace.as_str())
    });
    assert!(exposed.is_some(), "the join did not find the database from the table:\n{}", stack.log("detect"));

    // Deleted: the pod's key gets a tombstone.
    let deleted = api
        .delete(format!("{server}/api/v1/namespaces/{namespace}/pods/web-7d4b9-x2x?gracePeriodSeconds=0"))
        .send()
        .unwrap();
    assert!(deleted.status().is_success(), "delete: {}", deleted.status());
    let table = read_state(&topic, Duration::from_secs(60), |t| t.get(&pod_key).is_some_and(Option::is_none));
    assert_eq!(table.get(&pod_key), Some(&None), "no tombstone for the deleted pod:\n{}", stack.log("enrich"));
}

fn pod_object(name: &str) -> ClusterObject {
    ClusterObject {
        cluster: "testbed".into(),
        kind: "Pod".into(),
        api_version: "v1".into(),
        resource: "pods".into(),
        namespace: Some("shop".into()),
        name: name.into(),
        uid: format!("u-{name}"),
        resource_version: "1".into(),
        object: json!({"metadata": {"name": name, "namespace": "shop", "uid": format!("u-{name}")},
            "spec": {"containers": [{"name": "app", "image": "shop/app:1"}]}})
        .to_string(),
        ..ClusterObject::default()
    }
}

/// Writes records (a `None` object is a tombstone: a null value) and waits until the broker has them.
fn produce(topic: &str, records: &[(String, Option<ClusterObject>)]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let codec = Codec::<ClusterObject>::new().unwrap();
    for (key, object) in records {
        let payload = object.as_ref().map(|object| codec.encode(object).unwrap());
        let mut record = BaseRecord::<str, [u8]>::to(topic).key(key.as_str());
        if let Some(payload) = &payload {
            record = record.payload(payload.as_slice());
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn detect_loads_the_whole_topic_before_it_starts_then_follows_it_from_there() {
    use palisade_detect::{DetectConfig, Engine};
    use palisade_pipeline::stages::cluster_state;
    use palisade_runtime::{Bus, KafkaConfig, Shutdown, TopicsConfig, kafka::KafkaBus};
    use std::sync::Arc;

    let run = format!("csload-{}", common::run_id());
    let topic = format!("t.{run}.cluster_state");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let new = NewTopic::new(&topic, 3, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    assert!(runtime.block_on(admin.create_topics(&[new], &AdminOptions::new())).unwrap().iter().all(Result::is_ok));
    let key = |name: &str| format!("testbed/Pod/shop/{name}");
    let mut records: Vec<_> = (0..30).map(|i| format!("p{i}")).map(|n| (key(&n), Some(pod_object(&n)))).collect();
    records.push((key("p5"), None));
    produce(&topic, &records);

    let kafka: KafkaConfig = serde_json::from_value(json!({
        "bootstrap_servers": common::env("PALISADE_TEST_KAFKA"), "group_prefix": format!("palisade-{run}"),
    }))
    .unwrap();
    let topics = TopicsConfig { cluster_state: topic.clone(), ..TopicsConfig::default() };
    let engine = Arc::new(Engine::new(&DetectConfig::default()).unwrap());
    let shutdown = Shutdown::new();
    runtime.block_on(async {
        let bus = Bus::Kafka(Arc::new(KafkaBus::new(&kafka).unwrap()));
        let next = cluster_state::load(&bus, &topics, &engine).await;
        // Everything on the topic is in before load returns: 30 pods, one deleted again.
        assert_eq!(engine.cluster_state_pods(), 29);
        assert_eq!(next.values().sum::<i64>(), 31, "it goes on after the last record of each partition: {next:?}");
        let follow = tokio::spawn(cluster_state::follow(
            bus.clone(),
            (topic.clone(), next),
            None,
            Arc::clone(&engine),
            shutdown.clone(),
        ));
        // Followed from there: a new pod comes in, a tombstone takes one out.
        produce(&topic, &[(key("late"), Some(pod_object("late"))), (key("p6"), None)]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let known = |uid: &str| engine.cluster_state_pod(uid).is_some();
        let followed = || known("u-late") && !known("u-p6");
        while Instant::now() < deadline && !followed() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(engine.cluster_state_pods(), 29, "followed: one in, one out");
        assert!(known("u-late") && !known("u-p6") && !known("u-p5") && known("u-p0"));
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), follow).await.expect("follow ends at shutdown").unwrap();
    });
}
