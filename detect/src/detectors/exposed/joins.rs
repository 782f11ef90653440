//! K8S_ExposedPostgresTrustAuth (a LoadBalancer Service selecting PostgreSQL pods that trust every client) and
//! K8S_ExposedKubeflow (the Istio ingress gateway on a LoadBalancer in a cluster that runs Kubeflow): joins over
//! the cluster-state table (`table.rs`). A join fires on whichever of its objects arrives second, once, until the
//! exposure goes away.

use std::collections::{BTreeSet, HashMap};

use palisade_schemas::AuditEvent;
use serde_json::Value;

use super::table::{AUTH_METHOD_VARIABLE, Change, ServiceRecord, Tables, WorkloadRecord};
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
use crate::unit::{Event, Finding};
use crate::unit::{PodContext, WindowedDetector};
use crate::windowed::{restore_from, snapshot_of};

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
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
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
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

const POSTGRES_PORT: i64 = 5432;

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

impl Tables {
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
    fn state_key(&self) -> crate::unit::StateKey {
        crate::unit::StateKey::AuditCluster
    }

    /// Only changes of objects reach the tables (`Tables::apply`): the reads, most of the audit stream, are not
    /// sent to the cluster's one re-keyed partition.
    fn wants(&self, event: &Event<'_>) -> bool {
        matches!(event, Event::Audit(audit) if matches!(audit.verb.as_str(), "create" | "update" | "patch" | "delete"))
    }

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
        snapshot_of(&self.clusters)
    }

    fn restore(&mut self, state: &Value) -> Result<(), String> {
        restore_from(&mut self.clusters, state)
    }

    fn keys(&self) -> usize {
        self.clusters.values().map(|t| t.services.len() + t.workloads.len() + t.configmaps.len()).sum()
    }
}
