//! K8S_ExposedPostgresTrustAuth (a LoadBalancer Service selecting PostgreSQL pods that trust every client) and
//! K8S_ExposedKubeflow (the Istio ingress gateway on a LoadBalancer in a cluster that runs Kubeflow): joins over
//! the cluster-state table (`table.rs`). A join fires on whichever of its objects arrives second, once, until the
//! exposure goes away.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use palisade_schemas::AuditEvent;
use serde_json::Value;

use super::seed::ClusterSeed;
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
    /// What the API server's list/watch showed (`palisade.cluster.state`), shared by every shard: a join looks at
    /// it too, under what this shard's audit events said (which wins for an object both know).
    seed: Option<Arc<ClusterSeed>>,
}

/// The entries of `own` and those of `seed` that `own` neither has nor hides (`Tables::hidden`, under `kind/`).
fn union<'a, V>(
    (own, tables): (&'a HashMap<String, V>, &'a Tables),
    seed: Option<&'a HashMap<String, V>>,
    kind: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    let seeded = seed.into_iter().flatten();
    own.iter().chain(seeded.filter(move |(key, _)| !own.contains_key(*key) && tables.shows(|| format!("{kind}/{key}"))))
}

impl ClusterJoins {
    pub fn new() -> Self {
        Self::default()
    }

    /// Seed objects hidden by audit deletes, over every cluster.
    #[cfg(test)]
    pub(super) fn hidden_keys(&self) -> Vec<String> {
        self.clusters.values().flat_map(|tables| tables.hidden.keys().cloned()).collect()
    }
}

impl Tables {
    /// Why the cluster runs Kubeflow, and the audit event that said so, if it does.
    fn kubeflow_evidence(&self, seed: Option<&Tables>) -> Option<(String, String)> {
        let seeded = seed.is_some_and(|seed| seed.namespaces.contains("kubeflow"));
        if self.namespaces.contains("kubeflow") || seeded {
            return Some(("namespace kubeflow".into(), String::new()));
        }
        union((&self.workloads, self), seed.map(|seed| &seed.workloads), "workloads")
            .find(|(key, w)| w.kubeflow || key.starts_with("kubeflow/"))
            .map(|(key, w)| (format!("workload {key}"), w.audit_id.clone()))
    }

    fn workloads_selected<'a>(
        &'a self,
        seed: Option<&'a Tables>,
        namespace: &'a str,
        service: &'a ServiceRecord,
    ) -> impl Iterator<Item = (&'a String, &'a WorkloadRecord)> + 'a {
        let prefix = format!("{namespace}/");
        union((&self.workloads, self), seed.map(|seed| &seed.workloads), "workloads").filter(move |(key, workload)| {
            key.starts_with(&prefix)
                && !service.selector.is_empty()
                && service.selector.iter().all(|(k, v)| workload.labels.get(k) == Some(v))
        })
    }

    /// Why a workload's PostgreSQL trusts every client, if it does.
    fn trust_reason(&self, seed: Option<&Tables>, namespace: &str, workload: &WorkloadRecord) -> Option<String> {
        if workload.trust_env {
            return Some(format!("{AUTH_METHOD_VARIABLE}=trust in the pod template"));
        }
        let map = |name: &String| {
            let key = format!("{namespace}/{name}");
            let seeded = || seed?.configmaps.get(&key).filter(|_| self.shows(|| format!("configmaps/{key}")));
            self.configmaps.get(&key).or_else(seeded)
        };
        if let Some(name) = workload.env_configmaps.iter().find(|n| map(n).is_some_and(|m| m.trust_env)) {
            return Some(format!("{AUTH_METHOD_VARIABLE}=trust from ConfigMap {name}"));
        }
        workload
            .volume_configmaps
            .iter()
            .find(|n| map(n).is_some_and(|m| m.trust_hba))
            .map(|name| format!("pg_hba.conf with a trust host line in ConfigMap {name}"))
    }

    fn postgres_findings(&mut self, seed: Option<&Tables>, namespace: &str, trigger: &AuditEvent) -> Vec<Finding> {
        let prefix = format!("{namespace}/");
        let mut findings = Vec::new();
        let mut holding = BTreeSet::new();
        let services = union((&self.services, self), seed.map(|seed| &seed.services), "services");
        for (key, service) in services.filter(|(key, s)| key.starts_with(&prefix) && s.load_balancer) {
            let selected: Vec<_> = self.workloads_selected(seed, namespace, service).collect();
            let port = service.ports.contains(&POSTGRES_PORT);
            let trusting: Vec<(String, String, String)> = selected
                .iter()
                .filter(|(_, w)| port || w.postgres_image)
                .filter_map(|(_, w)| {
                    Some((w.workload.clone(), self.trust_reason(seed, namespace, w)?, w.audit_id.clone()))
                })
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

    fn kubeflow_findings(&mut self, seed: Option<&Tables>, trigger: &AuditEvent) -> Vec<Finding> {
        let evidence = self.kubeflow_evidence(seed);
        let mut findings = Vec::new();
        let mut holding = BTreeSet::new();
        for (key, service) in union((&self.services, self), seed.map(|seed| &seed.services), "services") {
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
        let seeded = self.seed.as_ref().map(|seed| seed.read());
        let seed = seeded.as_ref().and_then(|clusters| clusters.get(&audit.cluster));
        let applied = tables.apply(audit);
        let hidden = seed.and_then(|seed| tables.hide(audit, seed));
        tables.prune_hidden(seed);
        let Some(change) = hidden.or(applied) else { return Vec::new() };
        let mut out = Vec::new();
        let namespaces: Vec<String> = match change {
            Change::Namespace(namespace) => vec![namespace],
            Change::Cluster => {
                out.extend(tables.kubeflow_findings(seed, audit).into_iter().map(|f| (KUBEFLOW, f)));
                // A Postgres exposure lives in one namespace: the changed object's (a namespace's own name).
                let own = (audit.resource.as_deref() == Some("namespaces")).then(|| audit.name.clone()).flatten();
                audit.namespace.clone().or(own).into_iter().collect()
            }
        };
        for namespace in namespaces {
            out.extend(tables.postgres_findings(seed, &namespace, audit).into_iter().map(|f| (POSTGRES_TRUST, f)));
        }
        out
    }

    fn expire(&mut self, _now_ms: i64) {}

    fn pod_context(&self, pod_uid: &str) -> Option<PodContext> {
        self.clusters.values().find_map(|tables| tables.pods.get(pod_uid).cloned())
    }

    fn attach_shared(&mut self, shared: &Arc<dyn std::any::Any + Send + Sync>) {
        self.seed = Arc::clone(shared).downcast::<ClusterSeed>().ok();
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
