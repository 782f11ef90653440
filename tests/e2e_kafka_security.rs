//! The pipeline over the testbed broker's secured listeners: `palisade audit` (tailing an audit log), `detect`,
//! `enrich` and `sink`, each a separate process, reach Kafka only through SASL_SSL (SCRAM-SHA-512, the password
//! from the environment) or mutual TLS, and a privileged Pod in the log becomes an alert on the alerts topic. A
//! stage given a wrong password exits with what to check instead of retrying; no stage logs a secret.

mod common;

use std::time::Duration;

use serde_json::json;

fn tls(file: &str) -> String {
    format!("{}/{file}", common::env("PALISADE_TEST_KAFKA_TLS"))
}

/// A stack whose stages write alerts to the topic only, reading `events` from an audit log of their own.
fn stack(name: &str) -> common::Stack {
    let mut stack = common::Stack::new(name);
    stack.envs.retain(|(key, _)| !key.starts_with("PALISADE__SINK__OPENSEARCH__"));
    stack.set("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0");
    // Only the log is fed; nothing is posted to the webhook it also starts.
    stack.set("PALISADE__AUDIT__ALLOW_UNAUTHENTICATED", "true");
    stack.set("PALISADE__KAFKA__TLS__CA_FILE", &tls("ca.pem"));
    stack
}

/// Writes a privileged Pod's audit event into the stack's audit log and tails it.
fn feed_privileged_pod(stack: &mut common::Stack) -> String {
    let namespace = format!("sec-{}", stack.run.to_lowercase());
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let now = palisade_sink::ecs::rfc3339(i64::try_from(now_ms).unwrap());
    let event = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": format!("{}-1", stack.run), "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/{namespace}/pods"), "verb": "create",
        "user": {"username": "mallory", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.7"], "userAgent": "kubectl/v1.36.3",
        "objectRef": {"resource": "pods", "namespace": namespace, "name": "priv", "apiVersion": "v1"},
        "responseStatus": {"code": 201},
        "requestObject": {"kind": "Pod", "metadata": {"name": "priv", "namespace": namespace},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "securityContext": {"privileged": true}}]}},
        "requestReceivedTimestamp": now, "stageTimestamp": now,
        "annotations": {"authorization.k8s.io/decision": "allow"}
    });
    // Not `audit.log`: that name is the audit stage's own log.
    let log = stack.logs.join("kube-apiserver-audit.jsonl");
    std::fs::write(&log, format!("{event}\n")).unwrap();
    stack.set("PALISADE__AUDIT__LOG_PATHS", &format!("[\"{}\"]", log.display()));
    stack.set("PALISADE__AUDIT__LOG_POSITION_DIR", stack.logs.join("positions").to_str().unwrap());
    namespace
}

/// Runs the four stages and waits for the alert; returns every stage's log.
fn alert_arrives(stack: &mut common::Stack, protocol: &str) -> String {
    let namespace = feed_privileged_pod(stack);
    stack.start(&["audit", "detect", "enrich", "sink"]);
    let found = common::wait_for_alert(&stack.topic("alerts"), Duration::from_secs(90), |alert| {
        alert["alert_type"] == "K8S_PrivilegedContainer" && alert["namespace"] == namespace.as_str()
    });
    let logs: String = ["audit", "detect", "enrich", "sink"].iter().map(|stage| stack.log(stage)).collect();
    assert!(found.is_some(), "no alert through {protocol}:\n{logs}");
    for stage in ["audit", "detect", "enrich", "sink"] {
        let log = stack.log(stage);
        assert!(
            log.lines().any(|line| line.contains("kafka client") && line.contains(protocol)),
            "{stage} logs its client, version and protocol:\n{log}"
        );
    }
    logs
}

#[test]
fn the_pipeline_runs_over_sasl_ssl_with_scram() {
    let password = std::fs::read_to_string(tls("scram.password")).unwrap().trim().to_owned();
    let mut stack = stack("sasl");
    stack.set("PALISADE__KAFKA__BOOTSTRAP_SERVERS", &common::env("PALISADE_TEST_KAFKA_SASL_SSL"));
    stack.set("PALISADE__KAFKA__SASL__MECHANISM", "SCRAM-SHA-512");
    stack.set("PALISADE__KAFKA__SASL__USERNAME", "palisade");
    stack.set("PALISADE_KAFKA_SASL_PASSWORD", &password);
    // librdkafka's own debug output, the most talkative it gets about security and its configuration, must not
    // show the password.
    stack.set("PALISADE__KAFKA__PROPERTIES", "{ debug = \"security,broker,conf\" }");
    stack.set("RUST_LOG", "info,librdkafka=debug");
    let logs = alert_arrives(&mut stack, "sasl_ssl");
    assert!(logs.contains("librdkafka: SASL"), "librdkafka's security debug output reaches the logs");
    assert!(!logs.contains(&password), "a stage logged the SASL password");
}

#[test]
fn the_pipeline_runs_over_mutual_tls() {
    let mut stack = stack("mtls");
    stack.set("PALISADE__KAFKA__BOOTSTRAP_SERVERS", &common::env("PALISADE_TEST_KAFKA_MTLS"));
    stack.set("PALISADE__KAFKA__TLS__CERTIFICATE_FILE", &tls("client.pem"));
    stack.set("PALISADE__KAFKA__TLS__KEY_FILE", &tls("client.key"));
    alert_arrives(&mut stack, "\"ssl\"");
}

#[test]
fn a_stage_with_a_wrong_password_exits_with_what_to_check() {
    let mut stack = stack("wrong-password");
    stack.set("PALISADE__KAFKA__BOOTSTRAP_SERVERS", &common::env("PALISADE_TEST_KAFKA_SASL_SSL"));
    stack.set("PALISADE__KAFKA__SASL__MECHANISM", "SCRAM-SHA-512");
    stack.set("PALISADE__KAFKA__SASL__USERNAME", "palisade");
    stack.set("PALISADE_KAFKA_SASL_PASSWORD", "wrong-password-4711");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("detect")
        .envs(stack.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "detect must not run with a refused password:\n{stderr}");
    assert!(stderr.contains("refused the SASL credentials"), "{stderr}");
    assert!(!stderr.contains("gave up after"), "refused at once, not after the connect timeout:\n{stderr}");
    assert!(!stderr.contains("wrong-password-4711"), "{stderr}");
}
