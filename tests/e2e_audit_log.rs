//! The audit log path: kube-apiserver's log backend writes the testbed's audit log, `palisade audit` tails it
//! (no webhook involved: the webhook listens elsewhere), and a privileged Pod becomes an alert on the topic.

mod common;

use std::time::Duration;

use serde_json::json;

#[test]
fn a_privileged_pod_in_the_api_servers_audit_log_becomes_an_alert() {
    let mut stack = common::Stack::new("auditlog");
    let log = format!("{}/logs/audit.log", common::env("PALISADE_TESTBED_DIR"));
    stack.set("PALISADE__AUDIT__LISTEN_ADDR", "127.0.0.1:0");
    // This test feeds the log file only; nothing is posted to the webhook it also starts.
    stack.set("PALISADE__AUDIT__ALLOW_UNAUTHENTICATED", "true");
    stack.set("PALISADE__AUDIT__LOG_PATHS", &format!("[\"{log}\"]"));
    let positions = stack.logs.join("positions");
    stack.set("PALISADE__AUDIT__LOG_POSITION_DIR", positions.to_str().unwrap());
    // The testbed's log holds every earlier test's events (tens of MB after a few runs); a tailer with no position
    // reads it from the start, which took longer than the wait below under CI load. Start where a tailer that had
    // read the log up to now would resume: its position file says the log's inode and current length.
    let seeded = std::fs::metadata(&log).unwrap();
    let name: String = log.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let position_file = positions.join(format!("{name}.pos"));
    std::fs::create_dir_all(&positions).unwrap();
    std::fs::write(&position_file, format!("{} {}", std::os::unix::fs::MetadataExt::ino(&seeded), seeded.len()))
        .unwrap();
    stack.start(&["audit", "detect", "enrich", "sink"]);

    let api = common::apiserver();
    let base = common::env("PALISADE_TEST_APISERVER");
    let namespace = format!("log-{}", stack.run.to_lowercase());
    common::create_namespace(&api, &namespace);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "priv"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "securityContext": {"privileged": true}}]}});
    assert!(
        api.post(format!("{base}/api/v1/namespaces/{namespace}/pods")).json(&pod).send().unwrap().status().is_success()
    );

    let found = common::wait_for_alert(&stack.topic("alerts"), Duration::from_secs(90), |alert| {
        alert["alert_type"] == "K8S_PrivilegedContainer" && alert["namespace"] == namespace.as_str()
    });
    assert!(found.is_some(), "no alert from the audit log\naudit log:\n{}", stack.log("audit"));
    // The tailer saves its position once what it read is published: wait for it to move past the seeded one.
    let offset = || {
        let saved = std::fs::read_to_string(&position_file).unwrap_or_default();
        saved.split_whitespace().nth(1).and_then(|o| o.parse::<u64>().ok()).unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while offset() <= seeded.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(offset() > seeded.len(), "the tail position is saved past where it started ({})", seeded.len());
    let _ = api.delete(format!("{base}/api/v1/namespaces/{namespace}")).send();
}
