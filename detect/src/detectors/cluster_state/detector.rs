use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_schemas::AuditEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detectors::audit_object::{name_of, object, string_map};
use crate::detectors::pod_spec::{PodTemplate, changed_pod_template, workload_kind};
use crate::lists::image_repository;
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, Severity, Source};
use crate::unit::{Event, Finding};
use crate::unit::{PodContext, WindowedDetector};

pub const POSTGRES_TRUST: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_ExposedPostgresTrustAuth",
    title: "PostgreSQL with trust authentication exposed by a load balancer",
    severity: Severity::Medium,
    tactics: &["Initial Access"],
    techniques: &["T1133", "T1190"],
    source: Source::Audit,
    kind: DetectionKind::Join,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a LoadBalancer Service exposes PostgreSQL (port 5432 or pods of a postgres image) whose pods run with trust authentication (e.g. env POSTGRES_HOST_AUTH_METHOD=trust, or host all all ... trust in a mounted pg_hba).",
    false_positives: "CI and development databases that run with trust on purpose. Internal load balancers (cloud annotations) are already left out. Except by `namespace`.",
    audit_level: Some("RequestResponse on the objects it reads"),
    learned: None,
    unit: file!(),
};
pub const KUBEFLOW: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_ExposedKubeflow",
    title: "Kubeflow exposed by a load balancer",
    severity: Severity::Medium,
    tactics: &["Initial Access"],
    techniques: &["T1133", "T1190"],
    source: Source::Audit,
    kind: DetectionKind::Join,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when the Istio ingress gateway is exposed by a LoadBalancer in a cluster that runs Kubeflow.",
    false_positives: "an Istio gateway fronted by an authenticating proxy or a WAF. Internal load balancers are left out. Except by `workload` (`Service/istio-ingressgateway`).",
    audit_level: Some("RequestResponse on the objects it reads"),
    learned: None,
    unit: file!(),
};

const POSTGRES_PORT: i64 = 5432;

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
const AUTH_METHOD_VARIABLE: &str = "POSTGRES_HOST_AUTH_METHOD";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ServiceRecord {
    name: String,
    load_balancer: bool,
    selector: BTreeMap<String, String>,
    /// Service ports and numeric target ports.
    ports: Vec<i64>,
    /// Lower-cased name, label values and selector values.
    identity: Vec<String>,
    audit_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct WorkloadRecord {
    workload: String,
    labels: BTreeMap<String, String>,
    postgres_image: bool,
    /// A container sets POSTGRES_HOST_AUTH_METHOD=trust itself.
    trust_env: bool,
    /// ConfigMaps its environment reads (envFrom, or a configMapKeyRef for POSTGRES_HOST_AUTH_METHOD).
    env_configmaps: BTreeSet<String>,
    /// ConfigMaps mounted as volumes (a pg_hba.conf may be in one).
    volume_configmaps: BTreeSet<String>,
    kubeflow: bool,
    audit_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ConfigMapRecord {
    /// Holds POSTGRES_HOST_AUTH_METHOD=trust.
    trust_env: bool,
    /// Holds a pg_hba.conf `host` line with the `trust` method.
    trust_hba: bool,
    audit_id: String,
}

/// One cluster's tables; keys are `namespace/name` (workloads: `namespace/Kind/name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tables {
    services: HashMap<String, ServiceRecord>,
    workloads: HashMap<String, WorkloadRecord>,
    configmaps: HashMap<String, ConfigMapRecord>,
    namespaces: BTreeSet<String>,
    /// Joins that fired and still hold: `postgres/namespace/service`, `kubeflow/namespace/service`.
    fired: BTreeSet<String>,
    /// Pods by UID, for node alerts' Kubernetes context (absent from checkpoints written before it existed).
    #[serde(default)]
    pods: HashMap<String, PodContext>,
    /// `namespace/name` → UID, for pod deletes (their events name the pod, not its UID).
    #[serde(default)]
    pod_uids: HashMap<String, String>,
}

/// What an audit event changed in the tables, for the joins to look again at.
enum Change {
    /// Something in this namespace (a service, workload or configmap).
    Namespace(String),
    /// Kubeflow may have appeared or gone (a namespace), or a gateway changed.
    Cluster,
}

/// The cluster-state table and the joins over it.
#[derive(Default)]
pub struct ClusterJoins {
    clusters: HashMap<String, Tables>,
}

impl ClusterJoins {
    pub fn new() -> Self {
        Self::default()
    }
}

fn completed(audit: &AuditEvent, verbs: &[&str]) -> bool {
    audit.stage == "ResponseComplete"
        && verbs.contains(&audit.verb.as_str())
        && audit.response_code.is_none_or(|code| code < 300)
        && !audit.is_dry_run()
        && audit.subresource.is_none()
}

fn service_record(audit: &AuditEvent, service: &Value) -> ServiceRecord {
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

fn workload_record(audit: &AuditEvent, template: &PodTemplate) -> WorkloadRecord {
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

fn configmap_record(audit: &AuditEvent, map: &Value) -> ConfigMapRecord {
    let data = string_map(map.get("data"));
    let trust_env = data.get(AUTH_METHOD_VARIABLE).is_some_and(|v| v.trim().eq_ignore_ascii_case("trust"));
    let trust_hba = data.values().any(|text| hba_trusts_network(text));
    ConfigMapRecord { trust_env, trust_hba, audit_id: audit.audit_id.clone() }
}

impl Tables {
    /// Applies one audit event; what it changed, if anything.
    fn apply(&mut self, audit: &AuditEvent) -> Option<Change> {
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
                self.services.insert(format!("{namespace}/{}", record.name), record);
                Some(Change::Cluster)
            }
            ("", "configmaps") => {
                let map = object(audit)?;
                let name = name_of(audit, Some(&map));
                let record = configmap_record(audit, &map);
                let key = format!("{namespace}/{name}");
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
                    self.pod_uids.insert(format!("{namespace}/{pod}"), uid.clone());
                    self.pods.insert(uid.clone(), context);
                }
                let kubeflow = record.kubeflow;
                self.workloads.insert(format!("{namespace}/{}", record.workload), record);
                Some(if kubeflow { Change::Cluster } else { Change::Namespace(namespace) })
            }
        }
    }

    /// Why the cluster runs Kubeflow, and the audit event that said so, if it does.
    fn kubeflow_evidence(&self) -> Option<(String, String)> {
        if self.namespaces.contains("kubeflow") {
            return Some(("namespace kubeflow".into(), String::new()));
        }
        self.workloads
            .iter()
            .find(|(key, w)| w.kubeflow || key.starts_with("kubeflow/"))
            .map(|(key, w)| (format!("workload {key}"), w.audit_id.clone()))
    }

    fn workloads_selected<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a ServiceRecord,
    ) -> impl Iterator<Item = (&'a String, &'a WorkloadRecord)> + 'a {
        let prefix = format!("{namespace}/");
        self.workloads.iter().filter(move |(key, workload)| {
            key.starts_with(&prefix)
                && !service.selector.is_empty()
                && service.selector.iter().all(|(k, v)| workload.labels.get(k) == Some(v))
        })
    }

    /// Why a workload's PostgreSQL trusts every client, if it does.
    fn trust_reason(&self, namespace: &str, workload: &WorkloadRecord) -> Option<String> {
        if workload.trust_env {
            return Some(format!("{AUTH_METHOD_VARIABLE}=trust in the pod template"));
        }
        let map = |name: &String| self.configmaps.get(&format!("{namespace}/{name}"));
        if let Some(name) = workload.env_configmaps.iter().find(|n| map(n).is_some_and(|m| m.trust_env)) {
            return Some(format!("{AUTH_METHOD_VARIABLE}=trust from ConfigMap {name}"));
        }
        workload
            .volume_configmaps
            .iter()
            .find(|n| map(n).is_some_and(|m| m.trust_hba))
            .map(|name| format!("pg_hba.conf with a trust host line in ConfigMap {name}"))
    }

    fn postgres_findings(&mut self, namespace: &str, trigger: &AuditEvent) -> Vec<Finding> {
        let prefix = format!("{namespace}/");
        let mut findings = Vec::new();
        let mut holding = BTreeSet::new();
        for (key, service) in self.services.iter().filter(|(key, s)| key.starts_with(&prefix) && s.load_balancer) {
            let selected: Vec<_> = self.workloads_selected(namespace, service).collect();
            let port = service.ports.contains(&POSTGRES_PORT);
            let trusting: Vec<(String, String, String)> = selected
                .iter()
                .filter(|(_, w)| port || w.postgres_image)
                .filter_map(|(_, w)| Some((w.workload.clone(), self.trust_reason(namespace, w)?, w.audit_id.clone())))
                .collect();
            let Some((workload, reason, workload_audit)) = trusting.first() else { continue };
            let fired = format!("postgres/{key}");
            holding.insert(fired.clone());
            if self.fired.contains(&fired) {
                continue;
            }
            let mut finding = Finding {
                subject: format!("{key}/{}", service.audit_id),
                namespace: Some(namespace.to_owned()),
                workload: Some(format!("Service/{}", service.name)),
                ..Finding::default()
            };
            let other = if trigger.audit_id == service.audit_id { workload_audit } else { &service.audit_id };
            finding.details.insert("service".into(), service.name.clone());
            finding.details.insert(
                "postgres_workloads".into(),
                trusting.iter().map(|t| t.0.as_str()).collect::<Vec<_>>().join(","),
            );
            finding.details.insert("selected_workload".into(), workload.clone());
            finding.details.insert("reason".into(), reason.clone());
            finding
                .details
                .insert("ports".into(), service.ports.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
            finding.details.insert("joined_audit_id".into(), other.clone());
            findings.push(finding);
        }
        self.fired.retain(|f| !f.starts_with(&format!("postgres/{prefix}")) || holding.contains(f));
        self.fired.extend(holding);
        findings
    }

    fn kubeflow_findings(&mut self, trigger: &AuditEvent) -> Vec<Finding> {
        let evidence = self.kubeflow_evidence();
        let mut findings = Vec::new();
        let mut holding = BTreeSet::new();
        for (key, service) in &self.services {
            let gateway = service.identity.iter().any(|v| v.contains("istio-ingressgateway"))
                || service.selector.get("istio").is_some_and(|v| v == "ingressgateway");
            let Some((why, kubeflow_audit)) = evidence.as_ref().filter(|_| gateway && service.load_balancer) else {
                continue;
            };
            let fired = format!("kubeflow/{key}");
            holding.insert(fired.clone());
            if self.fired.contains(&fired) {
                continue;
            }
            let namespace = key.split('/').next().unwrap_or_default();
            let mut finding = Finding {
                subject: format!("{key}/{}", service.audit_id),
                namespace: Some(namespace.to_owned()),
                workload: Some(format!("Service/{}", service.name)),
                ..Finding::default()
            };
            let other = if trigger.audit_id == service.audit_id { kubeflow_audit } else { &service.audit_id };
            finding.details.insert("gateway_service".into(), key.clone());
            finding.details.insert("kubeflow".into(), why.clone());
            finding
                .details
                .insert("ports".into(), service.ports.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
            if !other.is_empty() {
                finding.details.insert("joined_audit_id".into(), other.clone());
            }
            findings.push(finding);
        }
        self.fired.retain(|f| !f.starts_with("kubeflow/") || holding.contains(f));
        self.fired.extend(holding);
        findings
    }
}

impl WindowedDetector for ClusterJoins {
    fn meta(&self) -> &'static AlertTypeMeta {
        POSTGRES_TRUST
    }

    fn metas(&self) -> Vec<&'static AlertTypeMeta> {
        vec![POSTGRES_TRUST, KUBEFLOW]
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        self.observe_all(event).into_iter().map(|(_, finding)| finding).collect()
    }

    fn observe_all(&mut self, event: &Event<'_>) -> Vec<(&'static AlertTypeMeta, Finding)> {
        let Event::Audit(audit) = event else { return Vec::new() };
        let tables = self.clusters.entry(audit.cluster.clone()).or_default();
        let Some(change) = tables.apply(audit) else { return Vec::new() };
        let mut out = Vec::new();
        let namespaces: Vec<String> = match change {
            Change::Namespace(namespace) => vec![namespace],
            Change::Cluster => {
                out.extend(tables.kubeflow_findings(audit).into_iter().map(|f| (KUBEFLOW, f)));
                // A Postgres exposure lives in one namespace: the changed object's (a namespace's own name).
                let own = (audit.resource.as_deref() == Some("namespaces")).then(|| audit.name.clone()).flatten();
                audit.namespace.clone().or(own).into_iter().collect()
            }
        };
        for namespace in namespaces {
            out.extend(tables.postgres_findings(&namespace, audit).into_iter().map(|f| (POSTGRES_TRUST, f)));
        }
        out
    }

    fn expire(&mut self, _now_ms: i64) {}

    fn pod_context(&self, pod_uid: &str) -> Option<PodContext> {
        self.clusters.values().find_map(|tables| tables.pods.get(pod_uid).cloned())
    }

    fn snapshot(&self) -> Value {
        serde_json::to_value(&self.clusters).unwrap_or_default()
    }

    fn restore(&mut self, state: &Value) -> Result<(), String> {
        self.clusters = serde_json::from_value(state.clone()).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn keys(&self) -> usize {
        self.clusters.values().map(|t| t.services.len() + t.workloads.len() + t.configmaps.len()).sum()
    }
}
