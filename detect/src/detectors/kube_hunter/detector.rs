//! K8S_PenTestToolsKubeHunter: the requests kube-hunter's active hunters make, recognised by their content, not
//! by the user agent (kube-hunter sends the stock `python-requests` agent, like countless legitimate scripts):
//! - a JSON patch adding `/hello: ["world"]` (its patch-permission probe, on pods and cluster roles);
//! - a Pod whose name is five hex characters, whose only container has the same name and runs `nginx:1.7.9`;
//! - a Namespace or ClusterRole whose name is five hex characters and (namespace) labelled `name: <same>`.
//!
//! Attempts count whether or not the API server allowed them. Its passive discovery is a window per identity (user
//! and source address): `discovery_distinct_calls` of kube-hunter's five discovery calls (API discovery `/api` or
//! `/version`, and cluster-wide lists of namespaces, pods, roles and cluster roles) within
//! `discovery_window_secs`, from a Python HTTP client (`python-requests/…` or the kubernetes Python client's
//! `OpenAPI-Generator/…/python`). Neither the agent nor the listings alone fire: operators list pods all day, and
//! Python scripts are everywhere.
//! Source: kube-hunter's hunters as summarised in `shared/corpus/kube_hunter/kube_hunter_api_fingerprint.json`.

use std::collections::BTreeMap;

use palisade_schemas::AuditEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keyed::{Keyed, KeyedChanges};
use crate::unit::WindowedDetector;
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, Severity, Source};
use crate::unit::{Event, Finding};
use crate::windowed::{WindowConfig, on_time, restore_from, snapshot_of};

pub const META: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_PenTestToolsKubeHunter",
    title: "kube-hunter penetration-testing tool activity",
    severity: Severity::Low,
    tactics: &["Execution"],
    techniques: &["T1613", "T1046"],
    source: Source::Audit,
    kind: DetectionKind::Window,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when requests made by the kube-hunter penetration-testing tool (user agent and probing pattern).",
    false_positives: "sanctioned penetration tests. Except by `user`, with the test's ticket as the reason.",
    audit_level: Some("Metadata (passive); RequestResponse on namespaces, pods, clusterroles (active)"),
    learned: None,
    windowed: None,
    unit: file!(),
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Discovery {
    /// Discovery call → event time it was last seen.
    calls: BTreeMap<String, i64>,
    quiet_until_ms: i64,
    last_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    watermark_ms: i64,
    identities: Keyed<Discovery>,
}

/// Active-hunter signatures (one event each) and the passive discovery window.
pub struct KubeHunter {
    config: WindowConfig,
    state: State,
}

impl KubeHunter {
    pub fn new(config: WindowConfig) -> Self {
        Self { config, state: State::default() }
    }
}

/// Which of kube-hunter's discovery calls this request is, if any.
fn discovery_call(audit: &AuditEvent) -> Option<&'static str> {
    let path = audit.request_uri.split('?').next().unwrap_or_default();
    match (audit.verb.as_str(), path) {
        ("get", "/api" | "/version") => return Some("api discovery"),
        ("list", "/api/v1/namespaces") => return Some("list namespaces"),
        ("list", "/api/v1/pods") => return Some("list pods"),
        ("list", "/apis/rbac.authorization.k8s.io/v1/roles") => return Some("list roles"),
        ("list", "/apis/rbac.authorization.k8s.io/v1/clusterroles") => return Some("list clusterroles"),
        _ => {}
    }
    // Pods listed namespace by namespace count as the pods listing.
    (audit.verb == "list" && audit.resource.as_deref() == Some("pods") && audit.subresource.is_none())
        .then_some("list pods")
}

fn python_client(audit: &AuditEvent) -> bool {
    audit.user_agent.as_deref().is_some_and(|agent| {
        agent.starts_with("python-requests/") || (agent.starts_with("OpenAPI-Generator/") && agent.ends_with("/python"))
    })
}

fn short_hex_name(name: &str) -> bool {
    name.len() == 5 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn signature(verb: &str, resource: &str, body: &Value) -> Option<&'static str> {
    match (verb, resource) {
        ("patch", _) => body
            .as_array()?
            .iter()
            .any(|op| {
                op.get("op").and_then(Value::as_str) == Some("add")
                    && op.get("path").and_then(Value::as_str) == Some("/hello")
                    && op.get("value") == Some(&serde_json::json!(["world"]))
            })
            .then_some("JSON patch adding /hello: [\"world\"] (patch-permission probe)"),
        ("create", "pods") => {
            let name = body.pointer("/metadata/name")?.as_str()?;
            let containers = body.pointer("/spec/containers")?.as_array()?;
            let container = containers.first()?;
            (containers.len() == 1
                && short_hex_name(name)
                && container.get("name").and_then(Value::as_str) == Some(name)
                && container.get("image").and_then(Value::as_str) == Some("nginx:1.7.9"))
            .then_some("probe pod: five-hex-character name, nginx:1.7.9")
        }
        ("create", "namespaces") => {
            let name = body.pointer("/metadata/name")?.as_str()?;
            (short_hex_name(name) && body.pointer("/metadata/labels/name").and_then(Value::as_str) == Some(name))
                .then_some("probe namespace: five-hex-character name labelled with itself")
        }
        ("create", "clusterroles") => {
            let name = body.pointer("/metadata/name")?.as_str()?;
            let rules = body.get("rules")?.as_array()?;
            let probe_rule = rules.len() == 1
                && rules[0].get("resources") == Some(&serde_json::json!(["pods"]))
                && rules[0].get("verbs") == Some(&serde_json::json!(["get", "watch", "list"]));
            (short_hex_name(name) && probe_rule)
                .then_some("probe cluster role: five-hex-character name, pods get/watch/list")
        }
        _ => None,
    }
}

/// Whether the body's text can hold a signature, before paying for a parse: each probe needs a word its text
/// must contain (pod creates are common and kilobytes long; the probe pod is the only one with nginx:1.7.9). A
/// JSON escape could spell the word otherwise, so a body with a backslash is always parsed.
pub(super) fn may_carry_signature(verb: &str, resource: &str, text: &str) -> bool {
    let needs = match (verb, resource) {
        ("patch", _) => "/hello",
        ("create", "pods") => "nginx:1.7.9",
        ("create", "clusterroles") => "watch",
        _ => return true,
    };
    text.contains(needs) || text.contains('\\')
}

impl KubeHunter {
    fn active(audit: &AuditEvent) -> Option<Finding> {
        let resource = audit.resource.as_deref()?;
        // Only these requests can carry a signature; the body is parsed for them alone.
        let candidate = audit.verb == "patch"
            || (audit.verb == "create" && matches!(resource, "pods" | "namespaces" | "clusterroles"));
        if !candidate {
            return None;
        }
        let text = audit.request_object.as_deref()?;
        if !may_carry_signature(&audit.verb, resource, text) {
            return None;
        }
        let body = serde_json::from_str::<Value>(text).ok()?;
        let reason = signature(&audit.verb, resource, &body)?;
        let mut finding = Finding::default();
        finding.details.insert("signature".into(), reason.to_owned());
        finding.details.insert("user_agent".into(), audit.user_agent.clone().unwrap_or_default());
        if let Some(code) = audit.response_code {
            finding.details.insert("response_code".into(), code.to_string());
        }
        Some(finding)
    }

    fn passive(&mut self, audit: &AuditEvent) -> Option<Finding> {
        let call = discovery_call(audit)?;
        if !python_client(audit) {
            return None;
        }
        let at = audit.stage_ms;
        if !on_time(&mut self.state.watermark_ms, at, self.config.lateness_secs) {
            return None;
        }
        let key = format!("{}|{}", audit.username, audit.source_ips.first().map(String::as_str).unwrap_or("?"));
        if !self.state.identities.contains_key(&key) {
            self.state.identities.make_room(self.config.max_keys, |d| d.last_ms);
        }
        let window_ms = self.config.discovery_window_secs as i64 * 1000;
        let discovery = self.state.identities.get_or_insert_with(&key, Discovery::default);
        discovery.last_ms = discovery.last_ms.max(at);
        discovery.calls.insert(call.to_owned(), at);
        discovery.calls.retain(|_, seen| *seen > at - window_ms);
        if discovery.calls.len() < self.config.discovery_distinct_calls || at < discovery.quiet_until_ms {
            return None;
        }
        let first = discovery.calls.values().min().copied().unwrap_or(at);
        let calls: Vec<String> = std::mem::take(&mut discovery.calls).into_keys().collect();
        discovery.quiet_until_ms = first + window_ms;
        let mut finding = Finding { subject: format!("passive/{first}"), ..Finding::default() };
        finding.details.insert("signature".into(), format!("passive discovery: {}", calls.join(", ")));
        finding.details.insert("user_agent".into(), audit.user_agent.clone().unwrap_or_default());
        finding.details.insert("window_secs".into(), self.config.discovery_window_secs.to_string());
        Some(finding)
    }
}

impl WindowedDetector for KubeHunter {
    fn state_key(&self) -> crate::unit::StateKey {
        crate::unit::StateKey::AuditUser
    }

    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        if audit.stage != "ResponseComplete" {
            return Vec::new();
        }
        Self::active(audit).into_iter().chain(self.passive(audit)).collect()
    }

    fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms - (self.config.discovery_window_secs + self.config.lateness_secs) as i64 * 1000;
        self.state.identities.retain(|_, d| d.last_ms >= horizon || d.quiet_until_ms >= now_ms);
    }

    fn take_keyed_changes(&mut self) -> Option<KeyedChanges> {
        let (all, entries) = self.state.identities.changed_entries();
        let rest = serde_json::json!({"watermark_ms": self.state.watermark_ms});
        Some(KeyedChanges { field: "identities", all, rest, entries })
    }

    fn record_changes_from_now(&mut self) {
        self.state.identities.record_from_now();
    }

    fn snapshot(&self) -> Value {
        snapshot_of(&self.state)
    }

    fn restore(&mut self, state: &Value) -> Result<(), String> {
        restore_from(&mut self.state, state)
    }

    fn keys(&self) -> usize {
        self.state.identities.len()
    }
}
