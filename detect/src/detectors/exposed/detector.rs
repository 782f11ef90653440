//! K8S_ExposedDashboard, K8S_ExposedRedis, K8S_ExposedService (Weave Scope, Argo, Jupyter, Portainer, Rancher,
//! kubectl proxies) and K8S_ExposedPostgresBroadIPRange, from a created or changed LoadBalancer Service.

use serde_json::Value;

use crate::detectors::audit_object::{name_of, object, succeeded};
use crate::engine::{Event, Finding, StatelessDetector};
use crate::meta::{AlertTypeMeta, catalogue_entry};

/// IPv4 source ranges with a prefix shorter than this are broad.
pub const BROAD_IPV4_PREFIX: u8 = 16;
/// IPv6 source ranges with a prefix shorter than this are broad.
pub const BROAD_IPV6_PREFIX: u8 = 48;

/// The facts of a LoadBalancer Service a detector matches on.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub name: String,
    pub namespace: Option<String>,
    /// Lower-cased service name, label values and selector values.
    pub identity: Vec<String>,
    /// Service ports and numeric target ports.
    pub ports: Vec<i64>,
    pub source_ranges: Vec<String>,
}

impl LoadBalancer {
    pub fn from_event(event: &Event<'_>) -> Option<Self> {
        let Event::Audit(audit) = event else { return None };
        if !succeeded(audit, &["create", "update", "patch"], "", &["services"]) {
            return None;
        }
        let service = object(audit)?;
        if service.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer") {
            return None;
        }
        let name = name_of(audit, Some(&service));
        let mut identity = vec![name.to_lowercase()];
        for pointer in ["/metadata/labels", "/spec/selector"] {
            if let Some(map) = service.pointer(pointer).and_then(Value::as_object) {
                identity.extend(map.values().filter_map(Value::as_str).map(str::to_lowercase));
            }
        }
        let mut ports = Vec::new();
        for port in service.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            ports.extend(port.get("port").and_then(Value::as_i64));
            ports.extend(port.get("targetPort").and_then(Value::as_i64));
        }
        let source_ranges = service
            .pointer("/spec/loadBalancerSourceRanges")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let namespace = service
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| audit.namespace.clone());
        Some(Self { name, namespace, identity, ports, source_ranges })
    }

    fn named(&self, needles: &[&str]) -> Option<String> {
        self.identity.iter().find(|value| needles.iter().any(|needle| value.contains(needle))).cloned()
    }

    fn finding(&self, reason: String) -> Finding {
        let mut finding = Finding {
            namespace: self.namespace.clone(),
            workload: Some(format!("Service/{}", self.name)),
            ..Finding::default()
        };
        finding.details.insert("reason".into(), reason);
        finding.details.insert("ports".into(), self.ports.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
        if !self.source_ranges.is_empty() {
            finding.details.insert("source_ranges".into(), self.source_ranges.join(","));
        }
        finding
    }
}

/// A source range is broad when it is malformed-free and its prefix is shorter than the threshold.
pub fn broad_range(range: &str) -> bool {
    let Some((address, prefix)) = range.trim().split_once('/') else { return false };
    let Ok(prefix) = prefix.parse::<u8>() else { return false };
    if address.contains(':') { prefix < BROAD_IPV6_PREFIX } else { prefix < BROAD_IPV4_PREFIX }
}

macro_rules! exposed_detector {
    ($name:ident, $id:literal, $check:expr) => {
        pub struct $name;

        impl StatelessDetector for $name {
            fn meta(&self) -> &'static AlertTypeMeta {
                const META: &AlertTypeMeta = catalogue_entry($id);
                META
            }

            fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
                let check: fn(&LoadBalancer) -> Option<String> = $check;
                LoadBalancer::from_event(event)
                    .and_then(|service| check(&service).map(|reason| service.finding(reason)))
                    .into_iter()
                    .collect()
            }
        }
    };
}

exposed_detector!(ExposedDashboard, "K8S_ExposedDashboard", |service| {
    service.named(&["kubernetes-dashboard"]).map(|hit| format!("Kubernetes Dashboard ({hit})"))
});

exposed_detector!(ExposedRedis, "K8S_ExposedRedis", |service| {
    if service.ports.contains(&6379) {
        return Some("Redis port 6379".into());
    }
    service.named(&["redis"]).map(|hit| format!("Redis ({hit})"))
});

exposed_detector!(ExposedService, "K8S_ExposedService", |service| {
    const APPLICATIONS: [&str; 8] = [
        "weave-scope",
        "argo-server",
        "argocd-server",
        "argo-workflows",
        "jupyter",
        "portainer",
        "rancher",
        "kubectl-proxy",
    ];
    if let Some(hit) = service.named(&APPLICATIONS) {
        return Some(format!("sensitive application ({hit})"));
    }
    if service.ports.contains(&4040) && service.named(&["scope"]).is_some() {
        return Some("Weave Scope port 4040".into());
    }
    service.ports.contains(&2746).then(|| "Argo Workflows server port 2746".into())
});

exposed_detector!(ExposedPostgresBroadIpRange, "K8S_ExposedPostgresBroadIPRange", |service| {
    let postgres = service.ports.contains(&5432) || service.named(&["postgres"]).is_some();
    if !postgres {
        return None;
    }
    if service.source_ranges.is_empty() {
        return Some("PostgreSQL behind a load balancer with no loadBalancerSourceRanges".into());
    }
    let broad: Vec<&str> = service.source_ranges.iter().map(String::as_str).filter(|r| broad_range(r)).collect();
    (!broad.is_empty()).then(|| format!("PostgreSQL open to broad ranges {}", broad.join(",")))
});
