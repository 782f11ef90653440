//! What an audit event did, for detectors that look at one kind of object: whether it was a successful change of
//! that kind, and the object as it stands.

use palisade_schemas::AuditEvent;
use serde_json::Value;

/// Identities that create and reconcile the built-in objects (bootstrap roles and bindings, aggregated roles,
/// namespace clean-up). Their changes are the platform's own, not an attacker's.
pub const PLATFORM_IDENTITIES: [&str; 5] = [
    "system:apiserver",
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:clusterrole-aggregation-controller",
    "system:serviceaccount:kube-system:namespace-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
];

pub fn by_platform(event: &AuditEvent) -> bool {
    PLATFORM_IDENTITIES.contains(&event.username.as_str()) || event.username.starts_with("system:node:")
}

/// True for a completed, successful, non-dry-run `verb` on `group`/`resources` (core group is "").
pub fn succeeded(event: &AuditEvent, verbs: &[&str], group: &str, resources: &[&str]) -> bool {
    event.stage == "ResponseComplete"
        && verbs.contains(&event.verb.as_str())
        && event.response_code.is_none_or(|code| code < 300)
        && !event.is_dry_run()
        && event.api_group.as_deref().unwrap_or("") == group
        && event.subresource.is_none()
        && event.resource.as_deref().is_some_and(|r| resources.contains(&r))
}

/// The object after the change: the request body of a create, the response of an update or patch (a patch body
/// may be partial), either as a fallback.
pub fn object(event: &AuditEvent) -> Option<Value> {
    let (first, second) = if event.verb == "create" {
        (&event.request_object, &event.response_object)
    } else {
        (&event.response_object, &event.request_object)
    };
    first.as_deref().or(second.as_deref()).and_then(|text| serde_json::from_str(text).ok())
}

pub fn name_of(event: &AuditEvent, object: Option<&Value>) -> String {
    object
        .and_then(|o| o.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| event.name.clone())
        .unwrap_or_else(|| "?".to_owned())
}

pub fn strings(value: Option<&Value>) -> Vec<&str> {
    value.and_then(Value::as_array).map(|items| items.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// A JSON object of strings (labels, annotations, a selector, a ConfigMap's data); other values are left out.
pub fn string_map(value: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}
