//! Finds the pod template in an audit event's object, for every workload kind that carries one (Pod,
//! Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob), and lists its
//! containers, init containers and ephemeral containers.

use palisade_schemas::AuditEvent;
use serde_json::Value;

/// A pod template found in an audit event.
#[derive(Debug, Clone)]
pub struct PodTemplate {
    /// `Kind/name` of the object that carries the template.
    pub workload: String,
    pub namespace: Option<String>,
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

/// The pod template an event creates or changes, if any. Failed and dry-run requests create nothing.
pub fn changed_pod_template(event: &AuditEvent) -> Option<PodTemplate> {
    if !matches!(event.verb.as_str(), "create" | "update" | "patch") || event.stage != "ResponseComplete" {
        return None;
    }
    if event.response_code.is_some_and(|code| code >= 300) || event.request_uri.contains("dryRun=") {
        return None;
    }
    let resource = event.resource.as_deref()?;
    let subresource = event.subresource.as_deref();
    let workload_resource = matches!(
        (resource, subresource),
        ("pods", None | Some("ephemeralcontainers"))
            | (
                "deployments"
                    | "statefulsets"
                    | "daemonsets"
                    | "replicasets"
                    | "replicationcontrollers"
                    | "jobs"
                    | "cronjobs",
                None
            )
    );
    if !workload_resource {
        return None;
    }
    // A patch body may be partial; the response holds the whole object. A create body is the whole object.
    let text = if event.verb == "create" {
        event.request_object.as_deref().or(event.response_object.as_deref())
    } else {
        event.response_object.as_deref()
    }?;
    let object: Value = serde_json::from_str(text).ok()?;
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or(match resource {
        "pods" => "Pod",
        "deployments" => "Deployment",
        "statefulsets" => "StatefulSet",
        "daemonsets" => "DaemonSet",
        "replicasets" => "ReplicaSet",
        "replicationcontrollers" => "ReplicationController",
        "jobs" => "Job",
        _ => "CronJob",
    });
    // A created object gets its final name (generateName) in the response.
    let response: Option<Value> = event.response_object.as_deref().and_then(|t| serde_json::from_str(t).ok());
    let name = response
        .as_ref()
        .and_then(|r| r.pointer("/metadata/name"))
        .or_else(|| object.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .or(event.name.as_deref())
        .or_else(|| object.pointer("/metadata/generateName").and_then(Value::as_str))
        .unwrap_or("?");
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| event.namespace.clone());
    let spec = match kind {
        "Pod" => object.get("spec"),
        "CronJob" => object.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => object.pointer("/spec/template/spec"),
    }?
    .clone();
    Some(PodTemplate { workload: format!("{kind}/{name}"), namespace, spec })
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
