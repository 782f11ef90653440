//! Alert → Elastic Common Schema document. Palisade-specific fields live under `palisade.*`.

use palisade_schemas::Alert;
use serde_json::{Value, json};

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// Daily index: `<prefix>-YYYY.MM.DD` of the alert's first evidence time.
pub fn index_name(prefix: &str, alert: &Alert) -> String {
    let (year, month, day) = civil_from_days(alert.timestamp_ms.div_euclid(86_400_000));
    format!("{prefix}-{year:04}.{month:02}.{day:02}")
}

/// ECS severity number: 73 high, 47 medium, 21 low, 0 informational (Elastic's risk-score bands).
fn severity_number(severity: &str) -> i64 {
    match severity {
        "High" => 73,
        "Medium" => 47,
        "Low" => 21,
        _ => 0,
    }
}

pub fn document(alert: &Alert) -> Value {
    let mut doc = json!({
        "@timestamp": rfc3339(alert.timestamp_ms),
        "message": alert.title,
        "ecs": {"version": "8.11.0"},
        "event": {
            "kind": "alert",
            "id": alert.id,
            "created": rfc3339(alert.detected_at_ms),
            "severity": severity_number(&alert.severity),
            "module": "palisade",
            "dataset": format!("palisade.{}", alert.source.as_str()),
        },
        "rule": {
            "id": alert.alert_type,
            "name": alert.title,
            "description": alert.description,
            "ruleset": "palisade",
        },
        "threat": {
            "framework": "MITRE ATT&CK",
            "tactic": {"name": alert.tactics},
            "technique": {"id": alert.techniques},
        },
        "orchestrator": {"type": "kubernetes"},
        "palisade": {
            "alert_type": alert.alert_type,
            "severity": alert.severity,
            "source": alert.source.as_str(),
            "in_container": alert.in_container,
            "workload": alert.workload,
            "remediation": alert.remediation,
            "locale": alert.locale,
            "count": alert.count,
            "evidence": alert.evidence,
            "details": alert.details,
        },
    });
    let object = doc.as_object_mut().expect("object literal");
    let orchestrator = object["orchestrator"].as_object_mut().expect("object literal");
    if let Some(cluster) = &alert.cluster {
        orchestrator.insert("cluster".into(), json!({"name": cluster}));
    }
    if let Some(namespace) = &alert.namespace {
        orchestrator.insert("namespace".into(), json!(namespace));
    }
    if let Some(pod) = &alert.pod {
        orchestrator.insert("resource".into(), json!({"type": "pod", "name": pod}));
    } else if let Some(workload) = &alert.workload {
        let (kind, name) = workload.split_once('/').unwrap_or(("", workload));
        orchestrator.insert("resource".into(), json!({"type": kind.to_ascii_lowercase(), "name": name}));
    }
    let mut container = serde_json::Map::new();
    if let Some(id) = &alert.container_id {
        container.insert("id".into(), json!(id));
    }
    if let Some(image) = &alert.image {
        container.insert("image".into(), json!({"name": image}));
    }
    if !container.is_empty() {
        object.insert("container".into(), Value::Object(container));
    }
    if let Some(node) = &alert.node {
        object.insert("host".into(), json!({"name": node, "hostname": node}));
    }
    if let Some(process) = &alert.process {
        object.insert(
            "process".into(),
            json!({
                "pid": process.pid,
                "executable": process.executable,
                "name": process.executable.rsplit('/').next(),
                "args": process.args,
                "command_line": process.args.join(" "),
                "parent": {"pid": process.ppid, "executable": process.parent_chain.first()},
                "user": {"id": process.user},
            }),
        );
        object["palisade"]["parent_chain"] = json!(process.parent_chain);
    }
    if let Some(user) = &alert.user {
        object.insert("user".into(), json!({"name": user}));
    }
    if let Some(ip) = &alert.source_ip {
        object.insert("source".into(), json!({"ip": ip}));
    }
    doc
}

/// The index template the product ships: ECS keyword/date/ip types; evidence stored, not indexed.
pub fn index_template(prefix: &str) -> Value {
    let keyword = json!({"type": "keyword"});
    json!({
        "index_patterns": [format!("{prefix}-*")],
        "priority": 200,
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "dynamic": true,
                "properties": {
                    "@timestamp": {"type": "date"},
                    "message": {"type": "text"},
                    "event": {"properties": {
                        "kind": keyword, "id": keyword, "created": {"type": "date"}, "severity": {"type": "long"},
                        "module": keyword, "dataset": keyword}},
                    "rule": {"properties": {"id": keyword, "name": keyword, "description": {"type": "text"}, "ruleset": keyword}},
                    "threat": {"properties": {"framework": keyword,
                        "tactic": {"properties": {"name": keyword}}, "technique": {"properties": {"id": keyword}}}},
                    "orchestrator": {"properties": {"type": keyword, "namespace": keyword,
                        "cluster": {"properties": {"name": keyword}},
                        "resource": {"properties": {"type": keyword, "name": keyword}}}},
                    "container": {"properties": {"id": keyword, "image": {"properties": {"name": keyword}}}},
                    "host": {"properties": {"name": keyword, "hostname": keyword}},
                    "process": {"properties": {"pid": {"type": "long"}, "executable": keyword, "name": keyword,
                        "args": keyword, "command_line": {"type": "wildcard"},
                        "parent": {"properties": {"pid": {"type": "long"}, "executable": keyword}},
                        "user": {"properties": {"id": keyword}}}},
                    "user": {"properties": {"name": keyword}},
                    "source": {"properties": {"ip": {"type": "ip"}}},
                    "palisade": {"properties": {
                        "alert_type": keyword, "severity": keyword, "source": keyword, "in_container": {"type": "boolean"},
                        "workload": keyword, "remediation": {"type": "text", "index": false}, "locale": keyword,
                        "count": {"type": "long"}, "parent_chain": keyword,
                        "evidence": {"type": "text", "index": false},
                        "details": {"type": "object", "enabled": false}}}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/alert.v2.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn dates_render_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn document_uses_ecs_names() {
        let alert = alert();
        let doc = document(&alert);
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["rule"]["id"], "K8S_PrivilegedContainer");
        assert_eq!(doc["threat"]["technique"]["id"], json!(["T1610", "T1611"]));
        assert_eq!(doc["orchestrator"]["namespace"], "default");
        assert_eq!(doc["orchestrator"]["resource"]["name"], "priv");
        assert_eq!(doc["container"]["image"]["name"], "nginx:1.27");
        assert_eq!(doc["source"]["ip"], "127.0.0.1");
        assert_eq!(doc["process"]["parent"]["executable"], "/sbin/init");
        assert_eq!(index_name("palisade-alerts", &alert), "palisade-alerts-2025.11.24");
    }
}
