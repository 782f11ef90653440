//! Managed-cluster audit sources end to end: the control-plane events of the corpus (Falco's audit traces), as
//! AKS delivers them (Azure resource-log envelopes on an Event Hubs-like topic reached with SASL PLAIN over TLS)
//! and as GKE does (Cloud Audit Logs entries on a topic of the pipeline's own Kafka), go through `palisade audit`,
//! `detect`, `enrich` and `sink` as separate processes and raise the same alerts as `palisade scan` raises from the
//! events themselves. A message that is no envelope is dead-lettered with the reason; a restart resumes after the
//! last message handled.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

fn corpus_events() -> Vec<Value> {
    common::corpus_audit_events()
}

/// (alert type, namespace) of every alert `palisade scan` raises from `events`.
fn scanned(events: &[Value], dir: &std::path::Path) -> BTreeSet<(String, String)> {
    let input = dir.join("scan-input.jsonl");
    std::fs::write(&input, events.iter().map(|e| format!("{e}\n")).collect::<String>()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["scan", "--audit"])
        .arg(&input)
        .env("PALISADE__CLUSTER", "scan")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(|line| key(&serde_json::from_str(line).unwrap())).collect()
}

fn key(alert: &Value) -> (String, String) {
    (
        alert["alert_type"].as_str().unwrap_or_default().to_owned(),
        alert["namespace"].as_str().unwrap_or_default().to_owned(),
    )
}

fn producer(servers: &str, secured: bool) -> BaseProducer {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", servers);
    if secured {
        let tls = common::env("PALISADE_TEST_KAFKA_TLS");
        let password = std::fs::read_to_string(format!("{tls}/plain.password")).unwrap();
        config
            .set("security.protocol", "sasl_ssl")
            .set("ssl.ca.location", format!("{tls}/ca.pem"))
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", "palisade-plain")
            .set("sasl.password", password.trim());
    }
    config.create().unwrap()
}

fn send(producer: &BaseProducer, topic: &str, payloads: &[String]) {
    for payload in payloads {
        // One partition: the messages are read in the order sent, so a source that read the topic again from its
        // start would publish the old events before a new one.
        producer.send(BaseRecord::<(), str>::to(topic).partition(0).payload(payload)).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Alerts on the stack's alerts topic until every expected one arrived (or time ran out), as (type, namespace).
fn alerts_until(
    stack: &common::Stack,
    expected: &BTreeSet<(String, String)>,
) -> (BTreeSet<(String, String)>, Vec<Value>) {
    let alerts = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(120), |seen| {
        let got: BTreeSet<_> = seen.iter().map(key).collect();
        expected.is_subset(&got)
    });
    (alerts.iter().map(key).collect(), alerts)
}

/// The audit IDs on the stack's audit topic once it holds at least `count` records (or time ran out), then every
/// record up to the end as it stands: a record published before the last one seen is read too.
fn audit_ids(stack: &common::Stack, count: usize) -> Vec<String> {
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let topic = stack.topic("audit_events");
    let codec = palisade_schemas::Codec::<palisade_schemas::AuditEvent>::new().unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("e2e-audit-ids-{}", common::run_id()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
        let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
        let ends: Vec<(i32, i64)> = partitions
            .iter()
            .map(|&p| (p, consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).map_or(0, |(_, high)| high)))
            .collect();
        let total: i64 = ends.iter().map(|(_, high)| high).sum();
        if (total as usize) < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        for &(partition, _) in &ends {
            assignment.add_partition_offset(&topic, partition, Offset::Beginning).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut ids = Vec::new();
        let mut open: std::collections::BTreeMap<i32, i64> = ends.into_iter().filter(|(_, end)| *end > 0).collect();
        while !open.is_empty() && Instant::now() < deadline {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else { continue };
            if message.offset() + 1 >= open.get(&message.partition()).copied().unwrap_or(0) {
                open.remove(&message.partition());
            }
            ids.push(codec.decode(message.payload().unwrap_or_default()).unwrap().audit_id);
        }
        return ids;
    }
}

fn azure_record(event: &Value) -> Value {
    json!({"time": event["stageTimestamp"], "category": "kube-audit",
           "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/E2E/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/E2E-AKS",
           "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
           "properties": {"log": event.to_string(), "stream": "stdout", "pod": "kube-apiserver-5d8f7b9c6-x2x4z"}})
}

#[test]
fn aks_diagnostic_envelopes_over_sasl_ssl_raise_the_alerts_of_the_events_and_resume_after_a_restart() {
    let events = corpus_events();
    let mut stack = common::Stack::new("aks");
    let expected = scanned(&events, &stack.logs);
    assert!(expected.len() >= 4, "the corpus raises alerts of its own: {expected:?}");
    let hub = format!("insights-logs-kube-audit-{}", stack.run);
    let tls = common::env("PALISADE_TEST_KAFKA_TLS");
    // The source's own connection, as to Event Hubs: SASL PLAIN over TLS (the testbed's user stands in for
    // `$ConnectionString`); the pipeline's own Kafka stays the plaintext listener.
    let source = format!(
        "[{{ name = \"aks\", envelope = \"aks\", topics = [\"{hub}\"], kafka = {{ bootstrap_servers = \"{}\", \
         group_prefix = \"palisade-{}\", tls = {{ ca_file = \"{tls}/ca.pem\" }}, sasl = {{ mechanism = \"PLAIN\", \
         username = \"palisade-plain\", password_file = \"{tls}/plain.password\" }} }} }}]",
        common::env("PALISADE_TEST_KAFKA_SASL_SSL"),
        stack.run
    );
    stack.set("PALISADE__AUDIT__KAFKA_SOURCES", &source);
    stack.set("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0");
    stack.set("PALISADE__AUDIT__ALLOW_UNAUTHENTICATED", "true");
    stack.envs.retain(|(key, _)| !key.starts_with("PALISADE__SINK__OPENSEARCH__"));

    // Records five to a message, with a record of another category in each (a hub shared with other logs), and
    // one message that is no envelope.
    let mut payloads: Vec<String> = events
        .chunks(5)
        .map(|chunk| {
            let mut records: Vec<Value> = chunk.iter().map(azure_record).collect();
            records.push(json!({"category": "kube-apiserver", "properties": {"log": "I1206 started"}}));
            json!({ "records": records }).to_string()
        })
        .collect();
    payloads.push("{\"value\": \"not an envelope\"}".to_owned());
    let secured = producer(&common::env("PALISADE_TEST_KAFKA_SASL_SSL"), true);
    send(&secured, &hub, &payloads);

    stack.start(&["audit", "detect", "enrich", "sink"]);
    let (got, alerts) = alerts_until(&stack, &expected);
    assert_eq!(got, expected, "the same alerts as from the events themselves\naudit log:\n{}", stack.log("audit"));
    assert!(alerts.iter().all(|alert| alert["cluster"] == "e2e-aks"), "the cluster named by the resource ID");
    let dead = common::read_dead_letters(&stack.topic("dead_letter"), 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1, "the message that is no envelope is dead-lettered");
    assert!(dead[0].1.contains("no `records` array"), "{}", dead[0].1);
    assert_eq!(audit_ids(&stack, events.len()).len(), events.len(), "every audit record published once");

    // A clean stop commits the source's position: after the restart only the new message is read.
    stack.stop("audit");
    let mut late = events[0].clone();
    late["auditID"] = json!(format!("late-{}", stack.run));
    send(&secured, &hub, &[json!({"records": [azure_record(&late)]}).to_string()]);
    stack.spawn(&["audit"]);
    // The source publishes a message's events only after the earlier ones were acknowledged: had it read the
    // hub again from its start, those records would be on the topic before the late one.
    let ids = audit_ids(&stack, events.len() + 1);
    assert!(
        ids.contains(&format!("late-{}", stack.run)),
        "the late record arrives\naudit log:\n{}",
        stack.log("audit")
    );
    assert_eq!(ids.len(), events.len() + 1, "nothing was read again after the restart");
}

/// The value of one Prometheus sample whose line starts with `prefix` and holds every label of `labels`.
fn sample(metrics: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix) && labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Starts `palisade audit` serving its metrics on a free port, then detect, enrich and sink without (they would
/// want the same port); returns where the audit stage's metrics are.
fn start_audit_serving_metrics(stack: &mut common::Stack) -> std::net::SocketAddr {
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    stack.set("PALISADE__METRICS_LISTEN_ADDR", &metrics.to_string());
    stack.spawn(&["audit"]);
    stack.envs.retain(|(key, _)| key != "PALISADE__METRICS_LISTEN_ADDR");
    stack.start(&["detect", "enrich", "sink"]);
    metrics
}

/// A k8s audit Event as GKE's Cloud Audit Logs entry carries it (service `k8s.io`; `methodName`
/// `io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>`, `resourceName` `<group>/<version>/…`).
fn gke_entry(event: &Value, cluster: &str) -> Value {
    let object = &event["objectRef"];
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let group = match text(&object["apiGroup"]) {
        group if group.is_empty() => "core".to_owned(),
        group => group,
    };
    let version = match text(&object["apiVersion"]) {
        version if version.is_empty() => "v1".to_owned(),
        version => version,
    };
    let resource = text(&object["resource"]);
    let subresource = text(&object["subresource"]);
    let mut method = format!("io.k8s.{}.{version}.{resource}", group.split('.').next().unwrap());
    let mut name = format!("{group}/{version}");
    if let Some(namespace) = object["namespace"].as_str() {
        name.push_str(&format!("/namespaces/{namespace}"));
    }
    name.push_str(&format!("/{resource}"));
    if let Some(object_name) = object["name"].as_str() {
        name.push_str(&format!("/{object_name}"));
    }
    if !subresource.is_empty() {
        method.push_str(&format!(".{subresource}"));
        name.push_str(&format!("/{subresource}"));
    }
    method.push_str(&format!(".{}", text(&event["verb"])));
    let code = event["responseStatus"]["code"].as_i64().unwrap_or(200);
    let status = match code {
        200..=299 => json!({}),
        403 => json!({"code": 7, "message": "Forbidden"}),
        404 => json!({"code": 5, "message": "NotFound"}),
        409 => json!({"code": 6, "message": "AlreadyExists"}),
        _ => json!({"code": 2, "message": "Unknown"}),
    };
    let kind = event["requestObject"]["kind"].as_str().unwrap_or("Object");
    let mut payload = json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "serviceName": "k8s.io", "methodName": method, "resourceName": name,
        "authenticationInfo": {"principalEmail": event["user"]["username"]},
        "authorizationInfo": [{"granted": code != 403, "permission": method, "resource": name}],
        "requestMetadata": {"callerIp": event["sourceIPs"][0], "callerSuppliedUserAgent": event["userAgent"]},
        "status": status,
    });
    if let Some(request) = event.get("requestObject").filter(|r| r.is_object()) {
        let mut request = request.clone();
        request["@type"] = json!(format!("{group}.k8s.io/{version}.{kind}"));
        payload["request"] = request;
    }
    if let Some(response) = event.get("responseObject").filter(|r| r.is_object()) {
        payload["response"] = response.clone();
    }
    json!({
        "protoPayload": payload,
        "insertId": format!("{}-insert", text(&event["auditID"])),
        "operation": {"id": event["auditID"], "producer": "k8s.io", "first": true, "last": true},
        "resource": {"type": "k8s_cluster", "labels": {"project_id": "e2e", "location": "europe-west1", "cluster_name": cluster}},
        "timestamp": event["stageTimestamp"], "receiveTimestamp": event["stageTimestamp"],
        "severity": "NOTICE", "logName": "projects/e2e/logs/cloudaudit.googleapis.com%2Factivity",
    })
}

#[test]
fn gke_cloud_audit_log_entries_raise_the_alerts_of_the_events() {
    let events = corpus_events();
    let mut stack = common::Stack::new("gke");
    let expected = scanned(&events, &stack.logs);
    // A Log Router export on the pipeline's own Kafka: the source uses [kafka].
    let export = format!("gke-audit-export-{}", stack.run);
    // Beside it a source whose brokers cannot be reached: it is retried on its own and stops nothing.
    stack.set(
        "PALISADE__AUDIT__KAFKA_SOURCES",
        &format!(
            "[{{ name = \"gke\", envelope = \"gke\", topics = [\"{export}\"] }}, {{ name = \"down\", envelope = \"aks\", \
             topics = [\"hub\"], kafka = {{ bootstrap_servers = \"127.0.0.1:9\" }} }}]"
        ),
    );
    stack.set("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0");
    stack.set("PALISADE__AUDIT__ALLOW_UNAUTHENTICATED", "true");
    stack.envs.retain(|(key, _)| !key.starts_with("PALISADE__SINK__OPENSEARCH__"));
    // One entry per message, as Pub/Sub delivers them, and an entry of another service among them.
    let mut payloads: Vec<String> = events.iter().map(|event| gke_entry(event, "e2e-gke").to_string()).collect();
    payloads.insert(
        3,
        json!({"protoPayload": {"serviceName": "compute.googleapis.com", "methodName": "v1.compute.instances.insert"},
                              "timestamp": "2026-12-06T10:00:00Z"})
        .to_string(),
    );
    send(&producer(&common::env("PALISADE_TEST_KAFKA"), false), &export, &payloads);

    let metrics = start_audit_serving_metrics(&mut stack);
    let (got, alerts) = alerts_until(&stack, &expected);
    assert_eq!(got, expected, "the same alerts as from the events themselves\naudit log:\n{}", stack.log("audit"));
    assert!(alerts.iter().all(|alert| alert["cluster"] == "e2e-gke"), "the cluster named by the entry's labels");
    assert_eq!(audit_ids(&stack, events.len()).len(), events.len());
    // The other service's entry was passed over and counted, not dead-lettered.
    let text = reqwest::blocking::get(format!("http://{metrics}/metrics")).unwrap().text().unwrap();
    let skipped =
        sample(&text, "palisade_stage_skipped_total{", &[r#"stage="audit-kafka-gke""#, r#"reason="other service""#]);
    assert_eq!(skipped, Some(1.0), "{text}");
    let up = |component: &str| sample(&text, "palisade_component_up{", &[&format!("component=\"{component}\"")]);
    assert_eq!(up("audit-kafka-gke"), Some(1.0), "{text}");
    assert_ne!(up("audit-kafka-down"), Some(1.0), "the unreachable source is not reported running");
}

/// What `palisade audit` printed when it refused to start with the stack's settings.
fn refused_audit_start(stack: &mut common::Stack) -> String {
    stack.set("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0");
    stack.set("PALISADE__AUDIT__ALLOW_UNAUTHENTICATED", "true");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("audit")
        .envs(stack.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    stderr
}

#[test]
fn a_source_whose_settings_cannot_work_stops_the_audit_start_with_the_reason() {
    let mut stack = common::Stack::new("source-settings");
    stack.set(
        "PALISADE__AUDIT__KAFKA_SOURCES",
        "[{ name = \"aks\", envelope = \"aks\", topics = [\"hub\"], kafka = { bootstrap_servers = \"127.0.0.1:9\", \
         sasl = { mechanism = \"SCRAM-SHA-512\", username = \"u\", password_file = \"/nonexistent/password\" } } }]",
    );
    let stderr = refused_audit_start(&mut stack);
    assert!(stderr.contains("audit source `aks`") && stderr.contains("/nonexistent/password"), "{stderr}");
}

/// A CloudWatch Logs call, as EKS's delivery makes them, on the testbed's moto server (which picks the service by
/// the credential scope and checks no signature).
fn cloudwatch(action: &str, body: Value) -> Value {
    let response = reqwest::blocking::Client::new()
        .post(common::env("PALISADE_TEST_MOTO"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", format!("Logs_20140328.{action}"))
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/logs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert!(status.is_success(), "{action}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn put_log_events(group: &str, stream: &str, events: &[(i64, String)]) {
    let events: Vec<Value> = events.iter().map(|(at, message)| json!({"timestamp": at, "message": message})).collect();
    cloudwatch("PutLogEvents", json!({"logGroupName": group, "logStreamName": stream, "logEvents": events}));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn eks_cloudwatch_audit_streams_raise_the_alerts_of_the_events_and_resume_after_a_restart() {
    let events = corpus_events();
    let mut stack = common::Stack::new("eks");
    let expected = scanned(&events, &stack.logs);
    let cluster = format!("e2e-eks-{}", stack.run).to_lowercase();
    let group = format!("/aws/eks/{cluster}/cluster");
    // The group as EKS lays it out: an audit stream per API server instance, and the other control-plane logs.
    let streams =
        ["kube-apiserver-audit-0a1b2c", "kube-apiserver-audit-3d4e5f", "kube-apiserver-0a1b2c", "authenticator-0a1b2c"];
    cloudwatch("CreateLogGroup", json!({"logGroupName": group}));
    for stream in streams {
        cloudwatch("CreateLogStream", json!({"logGroupName": group, "logStreamName": stream}));
    }
    // Stored a minute ago, the events spread over both audit streams, 10 ms apart.
    let base = now_ms() - 60_000;
    let stamped: Vec<(i64, String)> =
        events.iter().enumerate().map(|(i, event)| (base + 10 * i as i64, event.to_string())).collect();
    let (first, second): (Vec<_>, Vec<_>) = stamped.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let strip = |part: Vec<(usize, (i64, String))>| part.into_iter().map(|(_, event)| event).collect::<Vec<_>>();
    put_log_events(&group, streams[0], &strip(first));
    put_log_events(&group, streams[1], &strip(second));
    // Another stream's line is passed over (counted); a line of an audit stream that is no Event is dead-lettered.
    put_log_events(&group, streams[2], &[(base, "I1207 00:00:00.000000 1 server.go:100] started".to_owned())]);
    put_log_events(&group, streams[0], &[(base + 1, "{\"kind\": \"Event\", \"truncated".to_owned())]);

    stack.set(
        "PALISADE__AUDIT__CLOUDWATCH_SOURCES",
        &format!(
            "[{{ name = \"eks\", log_group = \"{group}\", region = \"us-east-1\", endpoint_url = \"{}\", \
             poll_interval_ms = 200 }}]",
            common::env("PALISADE_TEST_MOTO")
        ),
    );
    let positions = stack.logs.join("positions");
    stack.set("PALISADE__AUDIT__LOG_POSITION_DIR", &positions.display().to_string());
    // Credentials through the SDK's chain, from the environment; instance metadata is not asked.
    stack.set("AWS_ACCESS_KEY_ID", "testing");
    stack.set("AWS_SECRET_ACCESS_KEY", "testing");
    stack.set("AWS_EC2_METADATA_DISABLED", "true");
    stack.set("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0");
    stack.set("PALISADE__AUDIT__ALLOW_UNAUTHENTICATED", "true");
    stack.envs.retain(|(key, _)| !key.starts_with("PALISADE__SINK__OPENSEARCH__"));
    let metrics = start_audit_serving_metrics(&mut stack);

    let (got, alerts) = alerts_until(&stack, &expected);
    assert_eq!(got, expected, "the same alerts as from the events themselves\naudit log:\n{}", stack.log("audit"));
    assert!(alerts.iter().all(|alert| alert["cluster"] == cluster.as_str()), "the cluster the log group names");
    let dead = common::read_dead_letters(&stack.topic("dead_letter"), 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1, "the line that is no Event is dead-lettered");
    assert!(dead[0].1.contains("not JSON"), "{}", dead[0].1);
    // Polled every 200 ms, the window read again each time: still every event once.
    assert_eq!(audit_ids(&stack, events.len()).len(), events.len(), "every audit event published once");
    // Up once a poll went through; a poll that fails under load turns it to 0 until the next one succeeds.
    let up = |text: &str| sample(text, "palisade_component_up{", &[r#"component="audit-cloudwatch-eks""#]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = reqwest::blocking::get(format!("http://{metrics}/metrics")).unwrap().text().unwrap();
        if up(&text) == Some(1.0) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(up(&text), Some(1.0), "{text}");
    let stage = r#"stage="audit-cloudwatch-eks""#;
    let skipped = sample(&text, "palisade_stage_skipped_total{", &[stage, r#"reason="other stream""#]);
    assert_eq!(skipped, Some(1.0), "the other stream's line counted once, though read again at every poll\n{text}");

    // Stopped, an event is stored late: its timestamp is older than the newest one read, inside the window.
    stack.stop("audit");
    let position = positions.join("cloudwatch-eks.json");
    assert!(position.exists(), "the position is saved at the stop");
    let mut late = events[0].clone();
    late["auditID"] = json!(format!("late-{}", stack.run));
    put_log_events(&group, streams[1], &[(base + 5, late.to_string())]);
    stack.spawn(&["audit"]);
    let late_id = format!("late-{}", stack.run);
    let ids = audit_ids(&stack, events.len() + 1);
    assert!(ids.contains(&late_id), "the late event arrives\naudit log:\n{}", stack.log("audit"));
    // The poll that forwarded it saves the position only after everything it forwarded was acknowledged: once the
    // file changed after that, anything read again would be on the topic.
    let seen_at = std::fs::metadata(&position).unwrap().modified().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&position).unwrap().modified().unwrap() <= seen_at && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::metadata(&position).unwrap().modified().unwrap() > seen_at, "the source keeps polling");
    let ids = audit_ids(&stack, events.len() + 1);
    assert_eq!(ids.len(), events.len() + 1, "nothing was read again after the restart");
}

#[test]
fn a_cloudwatch_source_that_would_read_every_stream_stops_the_audit_start_with_the_reason() {
    let mut stack = common::Stack::new("cloudwatch-settings");
    stack.set(
        "PALISADE__AUDIT__CLOUDWATCH_SOURCES",
        "[{ name = \"eks\", log_group = \"/aws/eks/c/cluster\", stream_prefix = \"\" }]",
    );
    let stderr = refused_audit_start(&mut stack);
    assert!(stderr.contains("stream_prefix is empty"), "{stderr}");
}

/// As on EKS with IRSA: no keys in the environment, only the role and the projected token file the EKS webhook
/// mounts; the SDK's chain trades the token for credentials at STS (moto's) and the source reads the group with
/// them. Without the role the same source finds no credentials, says so, and stays down.
#[test]
fn an_eks_source_reads_with_irsa_web_identity_credentials_and_without_them_says_why() {
    let events = corpus_events();
    let mut stack = common::Stack::new("irsa");
    let moto = common::env("PALISADE_TEST_MOTO");
    let group = format!("/aws/eks/irsa-{}/cluster", stack.run).to_lowercase();
    cloudwatch("CreateLogGroup", json!({"logGroupName": group}));
    cloudwatch("CreateLogStream", json!({"logGroupName": group, "logStreamName": "kube-apiserver-audit-1"}));
    let base = now_ms() - 30_000;
    let stamped: Vec<(i64, String)> =
        events.iter().take(5).enumerate().map(|(i, event)| (base + i as i64, event.to_string())).collect();
    put_log_events(&group, "kube-apiserver-audit-1", &stamped);
    stack.set(
        "PALISADE__AUDIT__CLOUDWATCH_SOURCES",
        &format!(
            "[{{ name = \"eks\", log_group = \"{group}\", region = \"us-east-1\", endpoint_url = \"{moto}\", \
             poll_interval_ms = 200 }}]"
        ),
    );
    stack.set("PALISADE__AUDIT__LOG_POSITION_DIR", &stack.logs.join("positions").display().to_string());
    stack.set("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0");
    stack.set("PALISADE__AUDIT__ALLOW_UNAUTHENTICATED", "true");
    stack.set("AWS_EC2_METADATA_DISABLED", "true");
    // No profile either: the chain has nothing but what the test gives it.
    stack.set("AWS_CONFIG_FILE", "/nonexistent/config");
    stack.set("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    stack.envs.retain(|(key, _)| key != "AWS_ACCESS_KEY_ID" && key != "AWS_SECRET_ACCESS_KEY");

    // Without the role: no credentials, said in the log, nothing read.
    stack.spawn(&["audit"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stack.log("audit").contains("reading the CloudWatch log group failed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = stack.log("audit");
    assert!(log.contains("reading the CloudWatch log group failed"), "{log}");
    assert!(log.to_lowercase().contains("credentials"), "the reason names the credentials: {log}");
    stack.stop("audit");

    // With IRSA's two variables (the token's content is moto's to accept; STS at moto).
    let token = stack.logs.join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cGFsaXNhZGU6YXVkaXQifQ.c2ln")
        .unwrap();
    stack.set("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/palisade-audit");
    stack.set("AWS_WEB_IDENTITY_TOKEN_FILE", &token.display().to_string());
    stack.set("AWS_ENDPOINT_URL_STS", &moto);
    stack.spawn(&["audit"]);
    let ids = audit_ids(&stack, stamped.len());
    assert_eq!(ids.len(), stamped.len(), "read with the role's credentials\naudit log:\n{}", stack.log("audit"));
}
