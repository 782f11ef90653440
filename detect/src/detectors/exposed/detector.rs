//! K8S_ExposedDashboard, K8S_ExposedRedis, K8S_ExposedService (Weave Scope, Argo, Jupyter, Portainer, Rancher,
//! kubectl proxies) and K8S_ExposedPostgresBroadIPRange, from a created or changed LoadBalancer Service.

use serde_json::Value;

use crate::detectors::audit_object::{name_of, object, succeeded};
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

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
    ($name:ident, $meta:ident, $check:expr) => {
        pub struct $name;

        impl StatelessDetector for $name {
            fn meta(&self) -> &'static AlertTypeMeta {
                $meta
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

pub const EXPOSED_DASHBOARD: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_ExposedDashboard",
    title: "Kubernetes Dashboard exposed by a load balancer",
    severity: Severity::High,
    tactics: &["Initial Access"],
    techniques: &["T1133", "T1190"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when the Kubernetes Dashboard is exposed by a LoadBalancer Service.",
    false_positives: "dashboards deliberately public behind an authenticating proxy. Except by `namespace` + `workload`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

exposed_detector!(ExposedDashboard, EXPOSED_DASHBOARD, |service| {
    service.named(&["kubernetes-dashboard"]).map(|hit| format!("Kubernetes Dashboard ({hit})"))
});

pub const EXPOSED_REDIS: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_ExposedRedis",
    title: "Redis exposed by a load balancer",
    severity: Severity::Low,
    tactics: &["Initial Access"],
    techniques: &["T1133", "T1190"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a LoadBalancer exposes Redis (port 6379 or redis pods).",
    false_positives: "Redis with AUTH and TLS behind an internal load balancer. Except by `namespace` + `workload`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

exposed_detector!(ExposedRedis, EXPOSED_REDIS, |service| {
    if service.ports.contains(&6379) {
        return Some("Redis port 6379".into());
    }
    service.named(&["redis"]).map(|hit| format!("Redis ({hit})"))
});

pub const EXPOSED_SERVICE: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_ExposedService",
    title: "Sensitive application exposed by a load balancer",
    severity: Severity::Medium,
    tactics: &["Initial Access"],
    techniques: &["T1133", "T1190"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a LoadBalancer exposes a sensitive application that allows high-impact operations on the cluster (e.g. Weave Scope, Argo Workflows/CD server, Jupyter, Portainer, Rancher, kube API proxies; configurable).",
    false_positives: "demo environments. Except by `namespace`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

exposed_detector!(ExposedService, EXPOSED_SERVICE, |service| {
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

pub const EXPOSED_POSTGRES_BROAD_IP_RANGE: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_ExposedPostgresBroadIPRange",
    title: "PostgreSQL exposed by a load balancer to a broad IP range",
    severity: Severity::Medium,
    tactics: &["Initial Access"],
    techniques: &["T1133", "T1190"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a LoadBalancer Service exposes PostgreSQL with no loadBalancerSourceRanges or a broad one (0.0.0.0/0, ::/0, any prefix shorter than a configurable /N).",
    false_positives: "databases behind a cloud firewall the Service does not show. Except by `namespace` + `workload`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

exposed_detector!(ExposedPostgresBroadIpRange, EXPOSED_POSTGRES_BROAD_IP_RANGE, |service| {
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
