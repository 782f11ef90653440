//! Finds the pod template in an audit event's object, for every workload kind that carries one (Pod,
//! Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob), and lists its
//! containers, init containers and ephemeral containers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use palisade_schemas::AuditEvent;
use serde_json::Value;

use crate::detectors::audit_object::string_map;

/// A pod template found in an audit event.
#[derive(Debug, Clone)]
pub struct PodTemplate {
    /// `Kind/name` of the object that carries the template.
    pub workload: String,
    pub namespace: Option<String>,
    /// The workload's name without what controllers add (a pod-template hash, a generated suffix, an ordinal, a
    /// schedule time): a Deployment and its ReplicaSets and Pods share it.
    pub base_name: String,
    /// The labels its pods carry.
    pub labels: BTreeMap<String, String>,
    /// The object's UID, when the event holds the stored object (a create's response, an update's).
    pub uid: Option<String>,
    /// `Kind/name` of its first owner reference (a Pod's ReplicaSet, a Job's CronJob).
    pub owner: Option<String>,
    pub spec: Value,
}

/// A container of a pod template.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    /// `containers`, `initContainers` or `ephemeralContainers`.
    pub list: &'static str,
    pub name: &'a str,
    pub image: Option<&'a str>,
    pub value: &'a Value,
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

thread_local! {
    /// The last event's pod template, with what it was read from: the engine runs every detector over one event
    /// in turn, and five of them read its pod template (a 2-8 KB parse each time without this).
    static LAST_TEMPLATE: RefCell<Option<(TemplateSource, Option<Rc<PodTemplate>>)>> = const { RefCell::new(None) };
}

/// What a template is read from, kept whole and compared field by field: exact (no hash to collide), and
/// comparing the objects costs less than hashing them did for each unit that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TemplateSource {
    audit_id: String,
    stage: String,
    verb: String,
    resource: Option<String>,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    response_code: Option<i64>,
    request_uri: String,
    request_object: Option<String>,
    response_object: Option<String>,
}

impl TemplateSource {
    fn of(event: &AuditEvent) -> Self {
        Self {
            audit_id: event.audit_id.clone(),
            stage: event.stage.clone(),
            verb: event.verb.clone(),
            resource: event.resource.clone(),
            subresource: event.subresource.clone(),
            namespace: event.namespace.clone(),
            name: event.name.clone(),
            response_code: event.response_code,
            request_uri: event.request_uri.clone(),
            request_object: event.request_object.clone(),
            response_object: event.response_object.clone(),
        }
    }

    fn is(&self, event: &AuditEvent) -> bool {
        // The objects last: they are long, and the other fields tell most events apart.
        self.audit_id == event.audit_id
            && self.stage == event.stage
            && self.verb == event.verb
            && self.resource == event.resource
            && self.subresource == event.subresource
            && self.namespace == event.namespace
            && self.name == event.name
            && self.response_code == event.response_code
            && self.request_uri == event.request_uri
            && self.request_object == event.request_object
            && self.response_object == event.response_object
    }
}

/// The kind a workload resource holds (`deployments` → `Deployment`); `None` for other resources.
pub fn workload_kind(resource: &str) -> Option<&'static str> {
    Some(match resource {
        "pods" => "Pod",
        "deployments" => "Deployment",
        "statefulsets" => "StatefulSet",
        "daemonsets" => "DaemonSet",
        "replicasets" => "ReplicaSet",
        "replicationcontrollers" => "ReplicationController",
        "jobs" => "Job",
        "cronjobs" => "CronJob",
        _ => return None,
    })
}

/// The pod template an event creates or changes, if any. Failed and dry-run requests create nothing. The same
/// event asked again (by the next detector) gets the template already read.
pub fn changed_pod_template(event: &AuditEvent) -> Option<Rc<PodTemplate>> {
    // Most events are reads, or about other resources: they change no template, and comparing them with the cached
    // event for each of the five units that ask would cost more than this look.
    if !writes_a_workload(event) {
        return None;
    }
    if let Some(cached) =
        LAST_TEMPLATE.with_borrow(|last| last.as_ref().filter(|(source, _)| source.is(event)).map(|(_, t)| t.clone()))
    {
        return cached;
    }
    let template = read_pod_template(event).map(Rc::new);
    LAST_TEMPLATE.set(Some((TemplateSource::of(event), template.clone())));
    template
}

/// A completed write of a resource that holds a pod template (a pod's ephemeral containers included): what the
/// event's fields say, before its body is looked at.
fn writes_a_workload(event: &AuditEvent) -> bool {
    let Some(resource) = event.resource.as_deref() else { return false };
    let subresource = event.subresource.as_deref();
    matches!(event.verb.as_str(), "create" | "update" | "patch")
        && event.stage == "ResponseComplete"
        && workload_kind(resource).is_some()
        && (subresource.is_none() || (resource == "pods" && subresource == Some("ephemeralcontainers")))
}

/// The template of an event `writes_a_workload` let through.
fn read_pod_template(event: &AuditEvent) -> Option<PodTemplate> {
    if event.response_code.is_some_and(|code| code >= 300) || event.is_dry_run() {
        return None;
    }
    let resource = event.resource.as_deref()?;
    // The response holds the object as stored (a patch body may be partial; a create's response adds the name a
    // generateName got, the UID and defaults); a create's request body is the whole object too, when the policy
    // logged no response.
    let text = if event.verb == "create" {
        event.response_object.as_deref().or(event.request_object.as_deref())
    } else {
        event.response_object.as_deref()
    }?;
    let mut object: Value = serde_json::from_str(text).ok()?;
    // Only workload resources get here, so the resource always names a kind.
    let kind = object.get("kind").and_then(Value::as_str).or(workload_kind(resource))?.to_owned();
    // A created object named by generateName gets its final name in the response; only then is the response
    // parsed a second time (these bodies are kilobytes, and several detectors read each event).
    let own_name = object.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned);
    let name = own_name
        .or_else(|| {
            let response: Value = serde_json::from_str(event.response_object.as_deref()?).ok()?;
            response.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned)
        })
        .or_else(|| event.name.clone())
        .or_else(|| object.pointer("/metadata/generateName").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| event.namespace.clone());
    let (spec, labels) = match kind.as_str() {
        "Pod" => ("/spec", "/metadata/labels"),
        "CronJob" => ("/spec/jobTemplate/spec/template/spec", "/spec/jobTemplate/spec/template/metadata/labels"),
        _ => ("/spec/template/spec", "/spec/template/metadata/labels"),
    };
    let labels = string_map(object.pointer(labels));
    let base_name = base_name(&object, &name, &labels);
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_owned);
    let owner = object
        .pointer("/metadata/ownerReferences/0")
        .and_then(|o| Some(format!("{}/{}", o.get("kind")?.as_str()?, o.get("name")?.as_str()?)));
    let spec = object.pointer_mut(spec)?.take();
    Some(PodTemplate { workload: format!("{kind}/{name}"), namespace, base_name, labels, uid, owner, spec })
}

/// `coredns-5d78c9869d-x7x2p` (with `pod-template-hash: 5d78c9869d`) → `coredns`; `kube-proxy-8xk2q` (generated)
/// → `kube-proxy`; `etcd-0` of a StatefulSet → `etcd`; `backup-28345120` of a CronJob → `backup`.
fn base_name(object: &Value, name: &str, labels: &BTreeMap<String, String>) -> String {
    let generated = object.pointer("/metadata/generateName").and_then(Value::as_str).filter(|g| !g.is_empty());
    let mut base = match generated {
        Some(prefix) => prefix.trim_end_matches('-'),
        None => name,
    };
    if let Some(hash) = labels.get("pod-template-hash") {
        base = base.strip_suffix(hash.as_str()).and_then(|b| b.strip_suffix('-')).unwrap_or(base);
    }
    let owner_kinds: Vec<&str> = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|owners| owners.iter().filter_map(|o| o.get("kind").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    let numbered = owner_kinds.iter().any(|k| matches!(*k, "StatefulSet" | "CronJob" | "Job"));
    if numbered
        && let Some((head, tail)) = base.rsplit_once('-')
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        base = head;
    }
    // A Job's pod: the Job's name may itself be a CronJob's `name-<schedule time>`.
    if owner_kinds.contains(&"Job")
        && let Some((head, tail)) = base.rsplit_once('-')
        && tail.len() >= 8
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        base = head;
    }
    base.to_owned()
}

impl PodTemplate {
    pub fn containers(&self) -> Vec<Container<'_>> {
        let mut out = Vec::new();
        for list in CONTAINER_LISTS {
            for value in self.spec.get(list).and_then(Value::as_array).into_iter().flatten() {
                out.push(Container {
                    list,
                    name: value.get("name").and_then(Value::as_str).unwrap_or("?"),
                    image: value.get("image").and_then(Value::as_str),
                    value,
                });
            }
        }
        out
    }
}
