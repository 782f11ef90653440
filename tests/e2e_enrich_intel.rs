//! Threat intelligence, suppression and index retention on real Kafka and a real OpenSearch node, with
//! `palisade enrich` and `palisade sink` as separate processes:
//! - a detection whose source IP is in a listed range and one whose URL is under a listed domain reach the
//!   alerts topic with their verdicts, and the index with ECS `threat.enrichments` (found by a nested query);
//! - a container alert without pod context lists the unknown fields;
//! - a suppression rule written to the suppression file while enrich runs holds back the next alert of its
//!   namespace (counted on `/metrics` by rule) and nothing else;
//! - `palisade replay` on the alerts topic previews a candidate suppression: exactly the alerts it covers;
//! - the sink deletes a daily index older than the retention at start-up, and leaves today's and a name that
//!   only looks like one.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use palisade_schemas::Detection;
use serde_json::{Value, json};

const METRICS: &str = "127.0.0.1:19478";

fn detection(id: &str, alert_type: &str, namespace: Option<&str>) -> Detection {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/detection.v1.json")).unwrap();
    let mut detection: Detection = serde_json::from_str(&text).unwrap();
    detection.id = id.to_owned();
    detection.alert_type = alert_type.to_owned();
    detection.namespace = namespace.map(str::to_owned);
    detection.source_ip = Some("192.0.2.1".into());
    detection.timestamp_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    detection
}

fn suppressed_total(rule: &str) -> f64 {
    let text = reqwest::blocking::get(format!("http://{METRICS}/metrics")).and_then(|r| r.text()).unwrap_or_default();
    text.lines()
        .filter(|line| {
            line.starts_with("palisade_alerts_suppressed_total{") && line.contains(&format!("suppression=\"{rule}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn opensearch(method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
    reqwest::blocking::Client::new().request(method, format!("{}{path}", common::env("PALISADE_TEST_OPENSEARCH")))
}

#[test]
fn verdicts_suppressions_preview_and_retention_on_the_real_services() {
    let mut stack = common::Stack::new("intel");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ips.txt"), "# test feed\n203.0.113.0/24\n").unwrap();
    std::fs::write(dir.path().join("domains.txt"), "evil.example\n").unwrap();
    let suppressions = dir.path().join("suppressions.toml");
    std::fs::write(&suppressions, "# none yet\n").unwrap();
    let config = dir.path().join("palisade.toml");
    std::fs::write(
        &config,
        format!(
            "[enrich]\ndedup_window_secs = 0\nsuppressions_path = \"{}\"\nsuppressions_reload_secs = 1\n\
             [[enrich.threat_intel]]\nname = \"test-ips\"\npath = \"{}\"\nkind = \"ip\"\n\
             [[enrich.threat_intel]]\nname = \"test-domains\"\npath = \"{}\"\nkind = \"domain\"\nverdict = \"suspicious\"\n",
            suppressions.display(),
            dir.path().join("ips.txt").display(),
            dir.path().join("domains.txt").display()
        ),
    )
    .unwrap();
    stack.set("PALISADE_CONFIG", config.to_str().unwrap());
    stack.set("PALISADE__SINK__OPENSEARCH__RETENTION_DAYS", "30");

    // Indices for the retention check, made before the sink starts.
    let prefix = stack.index_prefix.clone();
    // Two days ago is inside the retention; today's index is left for the sink to create with its template.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let recent = palisade_sink::ecs::rfc3339(now_ms - 2 * 86_400_000)[..10].replace('-', ".");
    let (old, current, lookalike) =
        (format!("{prefix}-2020.01.01"), format!("{prefix}-{recent}"), format!("{prefix}-2020.01.01-restored"));
    for index in [&old, &current, &lookalike] {
        let response = opensearch(reqwest::Method::PUT, &format!("/{index}")).send().unwrap();
        assert!(response.status().is_success(), "create {index}: {}", response.text().unwrap_or_default());
    }

    stack.spawn(&["sink"]);
    stack.set("PALISADE__METRICS_LISTEN_ADDR", METRICS);
    stack.spawn(&["enrich"]);
    std::thread::sleep(Duration::from_secs(3));
    stack.assert_running();

    let exists = |index: &str| opensearch(reqwest::Method::HEAD, &format!("/{index}")).send().unwrap().status() == 200;
    let deadline = Instant::now() + Duration::from_secs(20);
    while exists(&old) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!exists(&old), "the 2020 index outlived a 30-day retention:\n{}", stack.log("sink"));
    assert!(exists(&current) && exists(&lookalike), "retention deleted more than the expired index");

    // One key: one partition, so the alerts come out in the order the detections went in.
    let sender = common::DetectionSender::new(&stack.topic("detections"));
    let send = |detection: &Detection| sender.send(detection);
    let run = &stack.run;
    let mut listed_ip = detection(&format!("{run}-ip"), "K8S_ExposedService", Some("team-a"));
    listed_ip.source_ip = Some("203.0.113.9".into());
    let mut listed_domain = detection(&format!("{run}-domain"), "K8S.NODE_SuspectDownload", None);
    listed_domain.details.insert("url".into(), "http://cdn.evil.example/x.sh".into());
    listed_domain.in_container = Some(true);
    (listed_domain.pod, listed_domain.workload, listed_domain.image) = (None, None, None);
    let clean = detection(&format!("{run}-clean"), "K8S_ExposedService", Some("team-a"));
    for d in [&listed_ip, &listed_domain, &clean] {
        send(d);
    }
    let alerts = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(30), |seen| seen.len() >= 3);
    let by_suffix = |suffix: &str| -> Value {
        alerts
            .iter()
            .find(|a| a["id"].as_str().is_some_and(|id| id.ends_with(suffix)))
            .cloned()
            .unwrap_or_else(|| panic!("no alert {suffix} in {alerts:?}\nenrich:\n{}", stack.log("enrich")))
    };
    let ip = by_suffix("-ip");
    assert_eq!(ip["threat_intel"].as_array().map(Vec::len), Some(1), "{ip}");
    assert_eq!(ip["threat_intel"][0]["list"], "test-ips");
    assert_eq!(ip["threat_intel"][0]["matched"], "203.0.113.0/24");
    assert_eq!(ip["threat_intel"][0]["verdict"], "malicious");
    let domain = by_suffix("-domain");
    assert_eq!(domain["threat_intel"][0]["indicator"], "cdn.evil.example");
    assert_eq!(domain["threat_intel"][0]["verdict"], "suspicious");
    assert_eq!(domain["unknown_fields"], json!(["namespace", "pod", "workload", "image"]));
    let clean_alert = by_suffix("-clean");
    assert_eq!(clean_alert["threat_intel"], json!([]), "192.0.2.1 is on no list");

    let nested = json!({"nested": {"path": "threat.enrichments",
        "query": {"term": {"threat.enrichments.indicator.ip": "203.0.113.9"}}}});
    let document = common::wait_for_document(&prefix, nested, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no document with the enrichment\nsink:\n{}", stack.log("sink")));
    assert_eq!(document["event"]["id"], ip["id"]);
    assert_eq!(document["threat"]["enrichments"][0]["indicator"]["provider"], "test-ips");

    // A suppression switched on by editing the file, without a restart.
    std::fs::write(
        &suppressions,
        "[[suppression]]\nname = \"team-s-drill\"\nnamespace = \"team-s\"\nreason = \"red-team drill, ticket SEC-7\"\n\
         expires = \"2099-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let held = detection(&format!("{run}-held"), "K8S_ExposedService", Some("team-s"));
    let after = detection(&format!("{run}-after"), "K8S_ExposedService", Some("team-a"));
    send(&held);
    send(&after);
    let has_after = |seen: &[Value]| seen.iter().any(|a| a["id"].as_str().is_some_and(|id| id.ends_with("-after")));
    let alerts = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(30), |seen| {
        seen.len() >= 4 && has_after(seen)
    });
    assert!(has_after(&alerts), "{alerts:?}\nenrich:\n{}", stack.log("enrich"));
    // The alerts topic has several partitions: read it all again, giving a fifth record time to show up.
    let alerts = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(5), |seen| seen.len() >= 5);
    let ids: Vec<&str> = alerts.iter().filter_map(|a| a["id"].as_str()).collect();
    assert!(!ids.iter().any(|id| id.ends_with("-held")), "the suppressed alert was sent: {ids:?}");
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(suppressed_total("team-s-drill"), 1.0);

    // The preview: a candidate that suppresses team-a's K8S_ExposedService covers exactly the three such alerts.
    let production = dir.path().join("production.toml");
    let kafka = common::env("PALISADE_TEST_KAFKA");
    let topics = format!(
        "[kafka]\nbootstrap_servers = \"{kafka}\"\ncreate_topics = false\n[topics]\nalerts = \"{}\"\n",
        stack.topic("alerts")
    );
    std::fs::write(&production, &topics).unwrap();
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(
        &candidate,
        format!(
            "{topics}[[enrich.suppressions]]\nname = \"team-a-lb\"\nalert_type = \"K8S_ExposedService\"\n\
             namespace = \"team-a\"\nreason = \"known load balancers\"\nexpires = \"2099-01-01T00:00:00Z\"\n"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["replay", "--config", production.to_str().unwrap(), "--json", "--topic", &stack.topic("alerts")])
        .arg("--candidate")
        .arg(&candidate)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "a difference: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["events"], 4);
    assert_eq!(report["production_alerts"], 4);
    assert_eq!(report["candidate_alerts"], 1);
    let exposed = &report["by_type"]["K8S_ExposedService"];
    assert_eq!((exposed["suppressed"].as_u64(), exposed["unchanged"].as_u64()), (Some(3), Some(0)), "{report}");
    assert_eq!(report["by_type"]["K8S.NODE_SuspectDownload"]["unchanged"], 1);
    assert!(exposed["examples"][0].as_str().unwrap().starts_with("suppressed by team-a-lb: "), "{report}");
}
