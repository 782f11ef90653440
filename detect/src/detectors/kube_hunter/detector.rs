//! K8S_PenTestToolsKubeHunter: the requests kube-hunter's active hunters make, recognised by their content, not
//! by the user agent (kube-hunter sends the stock `python-requests` agent, like countless legitimate scripts):
//! - a JSON patch adding `/hello: ["world"]` (its patch-permission probe, on pods and cluster roles);
//! - a Pod whose name is five hex characters, whose only container has the same name and runs `nginx:1.7.9`;
//! - a Namespace or ClusterRole whose name is five hex characters and (namespace) labelled `name: <same>`.
//!
//! Attempts count whether or not the API server allowed them. Its passive discovery (version, pods and roles
//! listings) needs a window per identity and is not covered here.
//! Source: kube-hunter's hunters as summarised in `shared/corpus/kube_hunter/kube_hunter_api_fingerprint.json`.

use serde_json::Value;

use crate::engine::{Event, Finding, StatelessDetector};
use crate::meta::{AlertTypeMeta, catalogue_entry};

const META: &AlertTypeMeta = catalogue_entry("K8S_PenTestToolsKubeHunter");

pub struct KubeHunter;

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

impl StatelessDetector for KubeHunter {
    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        if audit.stage != "ResponseComplete" {
            return Vec::new();
        }
        let Some(resource) = audit.resource.as_deref() else { return Vec::new() };
        let Some(body) = audit.request_object.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()) else {
            return Vec::new();
        };
        let Some(reason) = signature(&audit.verb, resource, &body) else { return Vec::new() };
        let mut finding = Finding::default();
        finding.details.insert("signature".into(), reason.to_owned());
        finding.details.insert("user_agent".into(), audit.user_agent.clone().unwrap_or_default());
        if let Some(code) = audit.response_code {
            finding.details.insert("response_code".into(), code.to_string());
        }
        vec![finding]
    }
}
