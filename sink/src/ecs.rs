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

/// Daily index: `<prefix>-YYYY.MM.DD` of the day the alert was raised (`detected_at`), so retention counts from
/// when the SOC got the alert, not from its evidence (a replayed or delayed event is not deleted on arrival).
/// Deduplication's updates keep the first alert's `detected_at`, so they land in the same index.
pub fn index_name(prefix: &str, alert: &Alert) -> String {
    let (year, month, day) = civil_from_days(alert.detected_at_ms.div_euclid(86_400_000));
    format!("{prefix}-{year:04}.{month:02}.{day:02}")
}

/// The day (days since 1970-01-01) a daily index `<prefix>-YYYY.MM.DD` holds; `None` for any other name.
pub fn index_day(prefix: &str, index: &str) -> Option<i64> {
    let date = index.strip_prefix(prefix)?.strip_prefix('-')?;
    let mut parts = date.split('.');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, i64, i64) = (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Inverse of civil_from_days (Howard Hinnant's days_from_civil).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (civil_from_days(days) == (if month <= 2 { year + 1 } else { year }, month, day)).then_some(days)
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
        "threat": threat(&alert.tactics, &alert.techniques),
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
            "tactics": alert.tactics,
            "techniques": alert.techniques,
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
        let mut resource = json!({"type": "pod", "name": pod});
        if !alert.pod_labels.is_empty() {
            let labels: Vec<String> = alert.pod_labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            resource["label"] = json!(labels);
        }
        orchestrator.insert("resource".into(), resource);
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
    if !alert.threat_intel.is_empty() {
        object["threat"]["enrichments"] = alert.threat_intel.iter().map(enrichment).collect();
        object["palisade"]["threat_intel"] = json!(alert.threat_intel);
    }
    if !alert.unknown_fields.is_empty() {
        object["palisade"]["unknown_fields"] = json!(alert.unknown_fields);
    }
    doc
}

/// One `threat.enrichments` entry (ECS 8: the indicator, and what in the alert matched it).
fn enrichment(verdict: &palisade_schemas::ThreatIntelMatch) -> Value {
    let mut indicator = json!({
        "provider": verdict.list,
        "confidence": if verdict.verdict == "malicious" { "High" } else { "Medium" },
        "description": format!("{} on list {} (entry {})", verdict.verdict, verdict.list, verdict.matched),
    });
    if verdict.kind == "ip" {
        let v6 = verdict.indicator.contains(':');
        indicator["type"] = json!(if v6 { "ipv6-addr" } else { "ipv4-addr" });
        indicator["ip"] = json!(verdict.indicator);
    } else {
        indicator["type"] = json!("domain-name");
        indicator["url"] = json!({"domain": verdict.indicator});
    }
    json!({
        "indicator": indicator,
        "matched": {"atomic": verdict.indicator, "field": verdict.field, "type": "indicator_match_rule"},
    })
}

/// The index template the product ships: ECS keyword/date/ip types; evidence stored, not indexed.
/// ECS `threat.*` as Elastic's detection rules write it: the ATT&CK tactics with ID, name and reference; the
/// techniques (a sub-technique's parent among them) and, under `technique.subtechnique`, the sub-techniques, each
/// array in the same order as its companions. The catalogue's non-ATT&CK intents ("Exploitation", "Probing")
/// are left to `palisade.tactics`.
fn threat(tactics: &[String], techniques: &[String]) -> Value {
    let tactics: Vec<(&str, &str)> =
        tactics.iter().filter_map(|name| crate::attack::tactic_id(name).map(|id| (id, name.as_str()))).collect();
    let mut parents: Vec<&str> = Vec::new();
    let mut subs: Vec<&str> = Vec::new();
    for id in techniques {
        let parent = id.split('.').next().unwrap_or(id);
        if !parents.contains(&parent) {
            parents.push(parent);
        }
        if parent != id && !subs.contains(&id.as_str()) {
            subs.push(id);
        }
    }
    let named = |ids: &[&str]| {
        json!({
            "id": ids,
            // An ID the table lacks is named by itself, so the arrays stay aligned.
            "name": ids.iter().map(|id| crate::attack::technique_name(id).unwrap_or(id)).collect::<Vec<_>>(),
            "reference": ids.iter().map(|id| crate::attack::technique_reference(id)).collect::<Vec<_>>(),
        })
    };
    let mut technique = named(&parents);
    if !subs.is_empty() {
        technique["subtechnique"] = named(&subs);
    }
    json!({
        "framework": "MITRE ATT&CK",
        "tactic": {
            "id": tactics.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            "name": tactics.iter().map(|(_, name)| *name).collect::<Vec<_>>(),
            "reference": tactics.iter().map(|(id, _)| crate::attack::tactic_reference(id)).collect::<Vec<_>>(),
        },
        "technique": technique,
    })
}

/// Bumped whenever the template below changes, so a sink that keeps an existing template can tell it is older.
pub const INDEX_TEMPLATE_VERSION: u64 = 2;

pub fn index_template(prefix: &str, shards: u32, replicas: u32) -> Value {
    let keyword = json!({"type": "keyword"});
    let attack = json!({"properties": {"id": keyword, "name": keyword, "reference": keyword}});
    json!({
        "index_patterns": [format!("{prefix}-*")],
        "priority": 200,
        "version": INDEX_TEMPLATE_VERSION,
        "template": {
            "settings": {"number_of_shards": shards, "number_of_replicas": replicas},
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
                        "tactic": attack,
                        "technique": {"properties": {"id": keyword, "name": keyword, "reference": keyword,
                            "subtechnique": attack}},
                        "enrichments": {"type": "nested", "properties": {
                            "indicator": {"properties": {"type": keyword, "ip": {"type": "ip"}, "provider": keyword,
                                "confidence": keyword, "description": {"type": "text"},
                                "url": {"properties": {"domain": keyword}}}},
                            "matched": {"properties": {"atomic": keyword, "field": keyword, "type": keyword}}}}}},
                    "orchestrator": {"properties": {"type": keyword, "namespace": keyword,
                        "cluster": {"properties": {"name": keyword}},
                        "resource": {"properties": {"type": keyword, "name": keyword, "label": keyword}}}},
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
                        "count": {"type": "long"}, "parent_chain": keyword, "unknown_fields": keyword,
                        "threat_intel": {"properties": {"indicator": keyword, "kind": keyword, "verdict": keyword,
                            "list": keyword, "matched": keyword, "field": keyword}},
                        "tactics": keyword, "techniques": keyword,
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
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/alert.v4.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn dates_render_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn daily_index_names_give_their_day_back() {
        let mut alert = alert();
        for ms in [0, 951_782_400_000, 1_764_000_000_123, 4_102_444_800_000] {
            alert.detected_at_ms = ms;
            let name = index_name("palisade-alerts", &alert);
            assert_eq!(index_day("palisade-alerts", &name), Some(ms.div_euclid(86_400_000)), "{name}");
        }
        for other in [
            "palisade-alerts-2025.02.30",
            "palisade-alerts-2025.1.01",
            "palisade-alerts",
            "other-2025.01.01",
            "palisade-alerts-2025.01.01-restored",
            "palisade-alertsx-2025.01.01",
        ] {
            assert_eq!(index_day("palisade-alerts", other), None, "{other}");
        }
    }

    #[test]
    fn threat_fields_are_complete_and_aligned() {
        let mut alert = alert();
        alert.tactics = vec!["Persistence".into(), "Exploitation".into(), "Privilege Escalation".into()];
        alert.techniques = vec!["T1098.006".into(), "T1610".into(), "T1098.004".into()];
        let threat = &document(&alert)["threat"];
        assert_eq!(threat["tactic"]["id"], json!(["TA0003", "TA0004"]), "Defender's intents are no ATT&CK tactic");
        assert_eq!(threat["tactic"]["name"], json!(["Persistence", "Privilege Escalation"]));
        assert_eq!(threat["tactic"]["reference"][1], "https://attack.mitre.org/tactics/TA0004/");
        assert_eq!(threat["technique"]["id"], json!(["T1098", "T1610"]), "parents, once each");
        assert_eq!(threat["technique"]["name"], json!(["Account Manipulation", "Deploy Container"]));
        assert_eq!(threat["technique"]["reference"][0], "https://attack.mitre.org/techniques/T1098/");
        assert_eq!(threat["technique"]["subtechnique"]["id"], json!(["T1098.006", "T1098.004"]));
        assert_eq!(
            threat["technique"]["subtechnique"]["name"],
            json!(["Additional Container Cluster Roles", "SSH Authorized Keys"])
        );
        assert_eq!(
            threat["technique"]["subtechnique"]["reference"][0],
            "https://attack.mitre.org/techniques/T1098/006/"
        );
        let doc = document(&alert);
        assert_eq!(doc["palisade"]["tactics"][1], "Exploitation", "every tactic the alert names is kept");
        assert_eq!(doc["palisade"]["techniques"][0], "T1098.006");
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
        assert_eq!(doc["orchestrator"]["resource"]["label"], json!(["app.kubernetes.io/name:web"]));
        assert_eq!(doc["container"]["image"]["name"], "nginx:1.27");
        assert_eq!(doc["source"]["ip"], "127.0.0.1");
        assert_eq!(doc["process"]["parent"]["executable"], "/sbin/init");
        assert_eq!(index_name("palisade-alerts", &alert), "palisade-alerts-2025.11.24");
    }

    #[test]
    fn threat_intel_verdicts_become_ecs_enrichments() {
        let mut alert = alert();
        let doc = document(&alert);
        let enrichment = &doc["threat"]["enrichments"][0];
        assert_eq!(enrichment["indicator"]["type"], "ipv4-addr");
        assert_eq!(enrichment["indicator"]["ip"], "203.0.113.9");
        assert_eq!(enrichment["indicator"]["provider"], "feodo");
        assert_eq!(enrichment["indicator"]["confidence"], "High");
        assert_eq!(enrichment["matched"]["field"], "source_ip");
        assert_eq!(doc["palisade"]["threat_intel"][0]["verdict"], "malicious");
        assert_eq!(doc["palisade"]["unknown_fields"], json!(["workload"]));
        alert.threat_intel[0].kind = "domain".into();
        alert.threat_intel[0].indicator = "pool.minexmr.com".into();
        alert.threat_intel[0].verdict = "suspicious".into();
        let doc = document(&alert);
        assert_eq!(doc["threat"]["enrichments"][0]["indicator"]["url"]["domain"], "pool.minexmr.com");
        assert_eq!(doc["threat"]["enrichments"][0]["indicator"]["confidence"], "Medium");
        alert.threat_intel.clear();
        assert!(document(&alert)["threat"].get("enrichments").is_none());
    }
}
