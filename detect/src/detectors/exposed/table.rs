//! The cluster-state table the exposure joins read: per cluster, the Services, workloads (their pod templates),
//! ConfigMaps of interest, namespaces and pods (for node alerts' pod context), built from audit events. It is part
//! of the detect stage's checkpoint (under `K8S_ExposedPostgresTrustAuth`, the joins' key).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_schemas::AuditEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detectors::audit_object::{name_of, object, string_map};
use crate::detectors::pod_spec::{PodTemplate, changed_pod_template, workload_kind};
use crate::lists::image_repository;
use crate::unit::PodContext;

/// Annotations (and values) that make a cloud provider's load balancer internal: AKS, EKS (legacy and AWS Load
/// Balancer Controller), GKE (both forms), OCI.
const INTERNAL_LOAD_BALANCER: [(&str, &str); 6] = [
    ("service.beta.kubernetes.io/azure-load-balancer-internal", "true"),
    ("service.beta.kubernetes.io/aws-load-balancer-internal", "true"),
    ("service.beta.kubernetes.io/aws-load-balancer-scheme", "internal"),
    ("networking.gke.io/load-balancer-type", "Internal"),
    ("cloud.google.com/load-balancer-type", "Internal"),
    ("service.beta.kubernetes.io/oci-load-balancer-internal", "true"),
];
pub(super) const AUTH_METHOD_VARIABLE: &str = "POSTGRES_HOST_AUTH_METHOD";
/// The annotation a shrunk audit event carries (its objects' long values cut).
const TRUNCATED: &str = palisade_schemas::bounds::TRUNCATED_FROM_BYTES;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ServiceRecord {
    pub(super) name: String,
    pub(super) load_balancer: bool,
    pub(super) selector: BTreeMap<String, String>,
    /// Service ports and numeric target ports.
    pub(super) ports: Vec<i64>,
    /// Lower-cased name, label values and selector values.
    pub(super) identity: Vec<String>,
    pub(super) audit_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct WorkloadRecord {
    pub(super) workload: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) postgres_image: bool,
    /// A container sets POSTGRES_HOST_AUTH_METHOD=trust itself.
    pub(super) trust_env: bool,
    /// ConfigMaps its environment reads (envFrom, or a configMapKeyRef for POSTGRES_HOST_AUTH_METHOD).
    pub(super) env_configmaps: BTreeSet<String>,
    /// ConfigMaps mounted as volumes (a pg_hba.conf may be in one).
    pub(super) volume_configmaps: BTreeSet<String>,
    pub(super) kubeflow: bool,
    pub(super) audit_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ConfigMapRecord {
    /// Holds POSTGRES_HOST_AUTH_METHOD=trust.
    pub(super) trust_env: bool,
    /// Holds a pg_hba.conf `host` line with the `trust` method.
    pub(super) trust_hba: bool,
    pub(super) audit_id: String,
}

/// One cluster's tables; keys are `namespace/name` (workloads: `namespace/Kind/name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Tables {
    pub(super) services: HashMap<String, ServiceRecord>,
    pub(super) workloads: HashMap<String, WorkloadRecord>,
    pub(super) configmaps: HashMap<String, ConfigMapRecord>,
    pub(super) namespaces: BTreeSet<String>,
    /// Joins that fired and still hold: `postgres/namespace/service`, `kubeflow/namespace/service`.
    pub(super) fired: BTreeSet<String>,
    /// Pods by UID, for node alerts' Kubernetes context (absent from checkpoints written before it existed).
    #[serde(default)]
    pub(super) pods: HashMap<String, PodContext>,
    /// `namespace/name` → UID, for pod deletes (their events name the pod, not its UID).
    #[serde(default)]
    pub(super) pod_uids: HashMap<String, String>,
    /// Objects an audit event deleted (or a config map it showed without trust settings) that the list/watch's
    /// table (`seed.rs`) still holds, its newer record not read yet: hidden from the joins' view of it
    /// (`services/<ns>/<name>`, `configmaps/<ns>/<name>`, `workloads/<ns>/<Kind>/<name>`),
    /// with the version the seed held, until the seed lets it go or holds another version (made again).
    #[serde(default)]
    pub(super) hidden: BTreeMap<String, String>,
}

/// The version (`audit_id`, which names the resource version) of what `seed` holds under a `Tables::hidden` key.
fn seed_version<'a>(seed: &'a Tables, hidden: &str) -> Option<&'a str> {
    match hidden.split_once('/') {
        Some(("services", key)) => seed.services.get(key).map(|s| s.audit_id.as_str()),
        Some(("configmaps", key)) => seed.configmaps.get(key).map(|c| c.audit_id.as_str()),
        Some(("workloads", key)) => seed.workloads.get(key).map(|w| w.audit_id.as_str()),
        _ => None,
    }
}

/// What an audit event changed in the tables, for the joins to look again at.
pub(super) enum Change {
    /// Something in this namespace (a service, workload or configmap).
    Namespace(String),
    /// Kubeflow may have appeared or gone (a namespace), or a gateway changed.
    Cluster,
}

pub(super) fn completed(audit: &AuditEvent, verbs: &[&str]) -> bool {
    audit.stage == "ResponseComplete"
        && verbs.contains(&audit.verb.as_str())
        && audit.response_code.is_none_or(|code| code < 300)
        && !audit.is_dry_run()
        && audit.subresource.is_none()
}

pub(super) fn service_record(audit: &AuditEvent, service: &Value) -> ServiceRecord {
    let name = name_of(audit, Some(service));
    let selector = string_map(service.pointer("/spec/selector"));
    let mut identity = vec![name.to_lowercase()];
    identity.extend(string_map(service.pointer("/metadata/labels")).into_values().map(|v| v.to_lowercase()));
    identity.extend(selector.values().map(|v| v.to_lowercase()));
    let mut ports = Vec::new();
    for port in service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
        ports.extend(port.get("port").and_then(Value::as_i64));
        ports.extend(port.get("targetPort").and_then(Value::as_i64));
    }
    let annotations = string_map(service.pointer("/metadata/annotations"));
    let internal = INTERNAL_LOAD_BALANCER
        .iter()
        .any(|(key, value)| annotations.get(*key).is_some_and(|v| v.eq_ignore_ascii_case(value)));
    // An internal load balancer (a cloud annotation keeps it inside the network) exposes nothing to the internet.
    let load_balancer = service.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer") && !internal;
    ServiceRecord { name, load_balancer, selector, ports, identity, audit_id: audit.audit_id.clone() }
}

pub(super) fn workload_record(audit: &AuditEvent, template: &PodTemplate) -> WorkloadRecord {
    let mut record = WorkloadRecord {
        workload: template.workload.clone(),
        labels: template.labels.clone(),
        audit_id: audit.audit_id.clone(),
        ..WorkloadRecord::default()
    };
    record.kubeflow = template.labels.get("app.kubernetes.io/part-of").is_some_and(|v| v == "kubeflow");
    for container in template.containers() {
        let repository = container.image.map(image_repository).unwrap_or_default().to_lowercase();
        record.postgres_image |= repository.contains("postgres") || repository.contains("postgis");
        record.kubeflow |= repository.starts_with("kubeflow") || repository.contains("ml-pipeline");
        for variable in container.value.get("env").and_then(Value::as_array).into_iter().flatten() {
            if variable.get("name").and_then(Value::as_str) != Some(AUTH_METHOD_VARIABLE) {
                continue;
            }
            record.trust_env |=
                variable.get("value").and_then(Value::as_str).is_some_and(|v| v.eq_ignore_ascii_case("trust"));
            if let Some(map) = variable.pointer("/valueFrom/configMapKeyRef/name").and_then(Value::as_str) {
                record.env_configmaps.insert(map.to_owned());
            }
        }
        for source in container.value.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
            if let Some(map) = source.pointer("/configMapRef/name").and_then(Value::as_str) {
                record.env_configmaps.insert(map.to_owned());
            }
        }
    }
    for volume in template.spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        if let Some(map) = volume.pointer("/configMap/name").and_then(Value::as_str) {
            record.volume_configmaps.insert(map.to_owned());
        }
        for source in volume.pointer("/projected/sources").and_then(Value::as_array).into_iter().flatten() {
            if let Some(map) = source.pointer("/configMap/name").and_then(Value::as_str) {
                record.volume_configmaps.insert(map.to_owned());
            }
        }
    }
    record
}

/// A pg_hba.conf line that lets any client of a network address in without a password:
/// `host all all 0.0.0.0/0 trust` (the method follows the address, or the address and its mask).
pub fn hba_trusts_network(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let host = fields.first().is_some_and(|t| t.starts_with("host"));
        host && fields.iter().skip(4).take(2).any(|f| f.eq_ignore_ascii_case("trust"))
    })
}

pub(super) fn configmap_record(audit: &AuditEvent, map: &Value) -> ConfigMapRecord {
    let data = string_map(map.get("data"));
    let trust_env = data.get(AUTH_METHOD_VARIABLE).is_some_and(|v| v.trim().eq_ignore_ascii_case("trust"));
    let trust_hba = data.values().any(|text| hba_trusts_network(text));
    ConfigMapRecord { trust_env, trust_hba, audit_id: audit.audit_id.clone() }
}

impl Tables {
    /// Whether the joins see `key` (a `hidden` key) of the seed.
    pub(super) fn shows(&self, hidden: impl FnOnce() -> String) -> bool {
        self.hidden.is_empty() || !self.hidden.contains_key(&hidden())
    }

    /// An audit event that says an object the seed holds is gone (a delete; a config map without trust settings
    /// any more, which this table does not keep): hidden from the joins from now on (the seed's newer record comes
    /// through another topic, later or never seen by this shard), and what the joins must look at again.
    pub(super) fn hide(&mut self, audit: &AuditEvent, seed: &Tables) -> Option<Change> {
        let (resource, name) = (audit.resource.as_deref()?, audit.name.as_deref());
        let namespace = audit.namespace.clone().unwrap_or_default();
        let group = audit.api_group.as_deref().unwrap_or("");
        let (key, change) = if completed(audit, &["delete"]) {
            let name = name?;
            match (group, resource) {
                ("", "services") => (format!("services/{namespace}/{name}"), Change::Cluster),
                ("", "configmaps") => (format!("configmaps/{namespace}/{name}"), Change::Namespace(namespace)),
                // A namespace is not hidden: its seed entry has no version to tell it made again by, and it only
                // stands as Kubeflow evidence until its tombstone.
                ("", "namespaces") => return None,
                _ => {
                    let key = format!("{namespace}/{}/{name}", workload_kind(resource)?);
                    let kubeflow = seed.workloads.get(&key).is_some_and(|w| w.kubeflow);
                    (format!("workloads/{key}"), if kubeflow { Change::Cluster } else { Change::Namespace(namespace) })
                }
            }
        } else if completed(audit, &["create", "update", "patch"]) && (group, resource) == ("", "configmaps") {
            // Only a whole config map says it has no trust: a shrunk event (its values cut) or one without data
            // (a patch of labels) says nothing of what the seed holds.
            if audit.annotations.contains_key(TRUNCATED) {
                return None;
            }
            let map = object(audit).filter(|map| map.get("data").is_some())?;
            let name = name_of(audit, Some(&map));
            let key = format!("{namespace}/{name}");
            if self.configmaps.contains_key(&key) {
                return None;
            }
            (format!("configmaps/{key}"), Change::Namespace(namespace))
        } else {
            return None;
        };
        let version = seed_version(seed, &key)?.to_owned();
        self.hidden.insert(key, version);
        Some(change)
    }

    /// Forgets hidden keys the seed no longer holds as it held them (its tombstone was read, or the object was made
    /// again).
    pub(super) fn prune_hidden(&mut self, seed: Option<&Tables>) {
        if !self.hidden.is_empty() {
            self.hidden.retain(|key, version| seed.and_then(|seed| seed_version(seed, key)) == Some(version.as_str()));
        }
    }

    /// Makes a key the seed may hold visible again: an audit event made the object again.
    fn unhide(&mut self, key: impl FnOnce() -> String) {
        if !self.hidden.is_empty() {
            self.hidden.remove(&key());
        }
    }

    /// Applies one audit event; what it changed, if anything.
    pub(super) fn apply(&mut self, audit: &AuditEvent) -> Option<Change> {
        let resource = audit.resource.as_deref()?;
        let group = audit.api_group.as_deref().unwrap_or("");
        let namespace = audit.namespace.clone().unwrap_or_default();
        if completed(audit, &["delete"]) {
            let name = audit.name.as_deref()?;
            return match (group, resource) {
                ("", "services") => {
                    self.services.remove(&format!("{namespace}/{name}"));
                    Some(Change::Cluster)
                }
                ("", "configmaps") => {
                    self.configmaps.remove(&format!("{namespace}/{name}")).map(|_| Change::Namespace(namespace))
                }
                ("", "namespaces") => {
                    self.namespaces.remove(name);
                    let prefix = format!("{name}/");
                    self.services.retain(|key, _| !key.starts_with(&prefix));
                    self.workloads.retain(|key, _| !key.starts_with(&prefix));
                    self.configmaps.retain(|key, _| !key.starts_with(&prefix));
                    Some(Change::Cluster)
                }
                _ => {
                    let kind = workload_kind(resource)?;
                    if kind == "Pod"
                        && let Some(uid) = self.pod_uids.remove(&format!("{namespace}/{name}"))
                    {
                        self.pods.remove(&uid);
                    }
                    let removed = self.workloads.remove(&format!("{namespace}/{kind}/{name}"));
                    removed.map(|w| if w.kubeflow { Change::Cluster } else { Change::Namespace(namespace) })
                }
            };
        }
        if !completed(audit, &["create", "update", "patch"]) {
            return None;
        }
        match (group, resource) {
            ("", "services") => {
                let service = object(audit)?;
                let record = service_record(audit, &service);
                self.unhide(|| format!("services/{namespace}/{}", record.name));
                self.services.insert(format!("{namespace}/{}", record.name), record);
                Some(Change::Cluster)
            }
            ("", "configmaps") => {
                let map = object(audit)?;
                let name = name_of(audit, Some(&map));
                let record = configmap_record(audit, &map);
                let key = format!("{namespace}/{name}");
                self.unhide(|| format!("configmaps/{key}"));
                if record.trust_env || record.trust_hba {
                    self.configmaps.insert(key, record);
                } else if self.configmaps.remove(&key).is_none() {
                    return None;
                }
                Some(Change::Namespace(namespace))
            }
            ("", "namespaces") => {
                let name = audit.name.clone().or_else(|| object(audit).map(|o| name_of(audit, Some(&o))))?;
                self.namespaces.insert(name).then_some(Change::Cluster)
            }
            _ => {
                let template = changed_pod_template(audit)?;
                let namespace = template.namespace.clone().unwrap_or(namespace);
                let record = workload_record(audit, &template);
                if let (Some(pod), Some(uid)) = (record.workload.strip_prefix("Pod/"), &template.uid) {
                    let containers = template.containers();
                    let context = PodContext {
                        namespace: namespace.clone(),
                        pod: pod.to_owned(),
                        workload: template.owner.clone().unwrap_or_else(|| record.workload.clone()),
                        image: match containers.as_slice() {
                            [only] => only.image.map(str::to_owned),
                            _ => None,
                        },
                        labels: template.labels.clone(),
                    };
                    // The same name with another UID (a StatefulSet's pod made again): the old pod's context goes.
                    if let Some(old) = self.pod_uids.insert(format!("{namespace}/{pod}"), uid.clone())
                        && old != *uid
                    {
                        self.pods.remove(&old);
                    }
                    self.pods.insert(uid.clone(), context);
                }
                let kubeflow = record.kubeflow;
                self.unhide(|| format!("workloads/{namespace}/{}", record.workload));
                self.workloads.insert(format!("{namespace}/{}", record.workload), record);
                Some(if kubeflow { Change::Cluster } else { Change::Namespace(namespace) })
            }
        }
    }
}
