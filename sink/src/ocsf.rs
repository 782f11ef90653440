//! An alert as an OCSF 1.4 Detection Finding (class 2004, category Findings), for SOCs whose pipeline reads OCSF
//! rather than ECS: the finding's ID is the alert's (so an update of a folded alert is activity 2, Update, of the
//! same finding), ATT&CK in `finding_info.attacks`, Kubernetes objects in `resources`, the container, host and
//! process profiles, and what OCSF has no attribute for under `unmapped.palisade`.

use palisade_schemas::Alert;
use serde_json::{Value, json};

/// The OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.4.0";
const DETECTION_FINDING: i64 = 2004;
const FINDINGS: i64 = 2;

/// OCSF `severity_id` of a catalogue severity.
fn severity_id(severity: &str) -> i64 {
    match severity {
        "Informational" => 1,
        "Low" => 2,
        "Medium" => 3,
        "High" => 4,
        "Critical" => 5,
        _ => 0,
    }
}

pub fn detection_finding(alert: &Alert) -> Value {
    // A count above one is a deduplicated alert sent again with its new count: an update of the same finding.
    let (activity_id, activity) = if alert.count > 1 { (2, "Update") } else { (1, "Create") };
    let attacks: Vec<Value> = alert
        .techniques
        .iter()
        .flat_map(|technique| {
            let tactics: Vec<Option<&String>> =
                if alert.tactics.is_empty() { vec![None] } else { alert.tactics.iter().map(Some).collect() };
            tactics.into_iter().map(move |tactic| {
                let mut attack = json!({"technique": {"uid": technique}, "version": "ATT&CK"});
                if let Some(tactic) = tactic {
                    attack["tactic"] = json!({"name": tactic});
                }
                attack
            })
        })
        .collect();
    let mut resources = Vec::new();
    if let Some(pod) = &alert.pod {
        let mut resource = json!({"type": "Pod", "name": pod, "namespace": alert.namespace});
        if !alert.pod_labels.is_empty() {
            resource["labels"] = json!(alert.pod_labels.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>());
        }
        resources.push(resource);
    }
    if let Some(workload) = &alert.workload {
        let (kind, name) = workload.split_once('/').unwrap_or(("", workload));
        resources.push(json!({"type": kind, "name": name, "namespace": alert.namespace}));
    } else if let (Some(namespace), None) = (&alert.namespace, &alert.pod) {
        resources.push(json!({"type": "Namespace", "name": namespace}));
    }
    let mut finding = json!({
        "class_uid": DETECTION_FINDING,
        "class_name": "Detection Finding",
        "category_uid": FINDINGS,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": DETECTION_FINDING * 100 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "time": alert.detected_at_ms,
        "severity_id": severity_id(&alert.severity),
        "severity": alert.severity,
        "status_id": 1,
        "status": "New",
        "is_alert": true,
        "count": alert.count,
        "message": alert.title,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": alert.id,
            "log_name": "palisade.alerts",
            "product": {"name": "Palisade", "vendor_name": "Palisade", "version": env!("CARGO_PKG_VERSION")},
        },
        "finding_info": {
            "uid": alert.id,
            "title": alert.title,
            "desc": alert.description,
            "types": [alert.alert_type],
            "created_time": alert.detected_at_ms,
            "first_seen_time": alert.first_seen_ms.unwrap_or(alert.timestamp_ms),
            "last_seen_time": alert.last_seen_ms.unwrap_or(alert.timestamp_ms),
            "analytic": {"uid": alert.alert_type, "name": alert.title, "type_id": 1, "type": "Rule"},
            "attacks": attacks,
        },
        "remediation": {"desc": alert.remediation},
        "resources": resources,
        "evidences": alert.evidence.iter().map(|raw| json!({"data": {"raw": raw}})).collect::<Vec<_>>(),
        "unmapped": {"palisade": {
            "source": format!("{:?}", alert.source).to_lowercase(),
            "cluster": alert.cluster,
            "in_container": alert.in_container,
            "details": alert.details,
            "threat_intel": alert.threat_intel,
            "unknown_fields": alert.unknown_fields,
            "locale": alert.locale,
        }},
    });
    let object = finding.as_object_mut().expect("object literal");
    if let Some(cluster) = &alert.cluster {
        object.insert("cloud".into(), json!({"provider": "kubernetes", "cluster": {"name": cluster}}));
    }
    if let Some(node) = &alert.node {
        object.insert("device".into(), json!({"hostname": node, "type_id": 0, "type": "Unknown"}));
    }
    if alert.container_id.is_some() || alert.image.is_some() {
        let mut container = json!({"uid": alert.container_id});
        if let Some(image) = &alert.image {
            container["image"] = json!({"name": image});
        }
        if alert.pod.is_some() {
            container["orchestrator"] = json!("kubernetes");
        }
        object.insert("container".into(), container);
    }
    if let Some(process) = &alert.process {
        let name = process.executable.rsplit('/').next().unwrap_or_default();
        object.insert(
            "process".into(),
            json!({"pid": process.pid, "cmd_line": process.args.join(" "),
                "file": {"path": process.executable, "name": name, "type_id": 1},
                "parent_process": {"pid": process.ppid,
                    "file": process.parent_chain.first().map(|path| json!({"path": path, "type_id": 1}))},
                "user": process.user.as_ref().map(|uid| json!({"uid": uid}))}),
        );
    }
    if let Some(user) = &alert.user {
        object.insert("actor".into(), json!({"user": {"name": user}}));
    }
    if let Some(ip) = &alert.source_ip {
        object.insert("src_endpoint".into(), json!({"ip": ip}));
    }
    finding
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
    fn an_alert_is_a_detection_finding_with_its_attack_resources_and_profiles() {
        let mut alert = alert();
        alert.count = 1;
        let finding = detection_finding(&alert);
        assert_eq!(finding["class_uid"], 2004);
        assert_eq!(finding["category_uid"], 2);
        assert_eq!((finding["activity_id"].as_i64(), finding["type_uid"].as_i64()), (Some(1), Some(200_401)));
        assert_eq!(finding["metadata"]["version"], "1.4.0");
        assert_eq!(finding["metadata"]["product"]["name"], "Palisade");
        assert_eq!(finding["finding_info"]["uid"], alert.id.as_str());
        assert_eq!(finding["finding_info"]["analytic"]["uid"], "K8S_PrivilegedContainer");
        assert_eq!(finding["finding_info"]["types"], json!(["K8S_PrivilegedContainer"]));
        assert_eq!(finding["severity"], alert.severity.as_str());
        assert_eq!(finding["severity_id"], severity_id(&alert.severity));
        let attacks = finding["finding_info"]["attacks"].as_array().unwrap();
        assert_eq!(attacks.len(), alert.techniques.len() * alert.tactics.len());
        assert_eq!(attacks[0]["technique"]["uid"], "T1610");
        assert_eq!(attacks[0]["tactic"]["name"], "Privilege Escalation");
        assert_eq!(
            finding["resources"][0],
            json!({"type": "Pod", "name": "priv", "namespace": "default",
            "labels": ["app.kubernetes.io/name:web"]})
        );
        assert_eq!(finding["container"]["image"]["name"], "nginx:1.27");
        assert_eq!(finding["actor"]["user"]["name"], "admin");
        assert_eq!(finding["src_endpoint"]["ip"], "127.0.0.1");
        assert_eq!(finding["process"]["parent_process"]["file"]["path"], "/sbin/init");
        assert_eq!(finding["evidences"].as_array().map(Vec::len), Some(alert.evidence.len()));
        assert_eq!(finding["unmapped"]["palisade"]["threat_intel"][0]["list"], "feodo");
    }

    #[test]
    fn a_folded_alert_sent_again_is_an_update_and_severities_map() {
        let mut alert = alert();
        alert.count = 7;
        let finding = detection_finding(&alert);
        assert_eq!((finding["activity_name"].as_str(), finding["type_uid"].as_i64()), (Some("Update"), Some(200_402)));
        assert_eq!(finding["count"], 7);
        let ids: Vec<i64> =
            ["Informational", "Low", "Medium", "High", "Critical", "?"].iter().map(|s| severity_id(s)).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 0]);
    }
}
