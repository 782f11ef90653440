use std::sync::Arc;

use palisade_schemas::AuditEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::baseline::{BaselineConfig, Profiles, Verdict};
use crate::detectors::pod_spec::changed_pod_template;
use crate::lists::{AuditLists, SHIPPED_AUDIT_LISTS, SharedAuditLists, glob_matches, image_name};
use crate::unit::LearningState;
use crate::unit::WindowedDetector;
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
use crate::unit::{Event, Finding};

pub const SA_RARE: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_ServiceAccountRareOperation",
    title: "Service account performed an operation it never performed before",
    severity: Severity::Medium,
    tactics: &["Lateral Movement", "Credential Access"],
    techniques: &["T1078", "T1550.001", "T1528"],
    source: Source::Audit,
    kind: DetectionKind::Baseline,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a service account performs an operation (verb, resource, subresource, namespace scope) it has not performed during its learning period.",
    false_positives: "a controller upgraded to a version that does more; a rarely run job. Except by `user` (the service account), or lengthen `detect.baselines.service_accounts.learning_secs`.",
    audit_level: Some("Metadata"),
    learned: None,
    windowed: None,
    unit: file!(),
};
pub const KUBE_SYSTEM: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_KubeSystemContainer",
    title: "New container in the kube-system namespace",
    severity: Severity::Informational,
    tactics: &["Persistence"],
    techniques: &["T1610", "T1036.005"],
    source: Source::Audit,
    kind: DetectionKind::Baseline,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a new container appears in kube-system that is not among the workloads normally running there (learned set plus allow-list).",
    false_positives: "a new add-on installed after the learning period, or a listed add-on pulled through a mirror registry. Add `name image...` to `detect.baselines.kube_system_allow`, or except by `workload`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};
pub const ABNORMAL_MI: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_AbnormalMiActivity",
    title: "Abnormal activity of a managed identity used by the cluster",
    severity: Severity::Medium,
    tactics: &["Lateral Movement"],
    techniques: &["T1078.004"],
    source: Source::Cloud,
    kind: DetectionKind::Baseline,
    inputs: &[Input::Cloud],
    maturity: Maturity::Experimental,
    description: "Fires when a cloud managed identity used by a cluster add-on performs cloud operations outside its learned profile (input: cloud activity log records on their own topic).",
    false_positives: "an add-on upgrade (new cloud API calls), scaling events never seen in learning. Except by `user` (the identity).",
    audit_level: None,
    learned: None,
    windowed: None,
    unit: file!(),
};

/// One allow-list entry: a workload base-name pattern and the image patterns its containers may run (`None`: any
/// image, only for configured entries that name no image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSystemAllowed {
    pub workload: String,
    pub images: Option<Vec<String>>,
}

/// Reads allow-list lines (`name image-pattern... | @set`), expanding `@set` definitions (`@set = patterns...`)
/// met on earlier lines. An unknown `@set` expands to nothing, so it allows no image.
pub fn parse_kube_system_allow(lines: &[String]) -> Vec<KubeSystemAllowed> {
    let mut sets: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    let mut entries = Vec::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        if first.starts_with('@') && rest.first() == Some(&"=") {
            let expanded = expand(&rest[1..], &sets);
            sets.insert(first.to_owned(), expanded);
            continue;
        }
        let images = (!rest.is_empty()).then(|| expand(&rest, &sets));
        entries.push(KubeSystemAllowed { workload: first.to_owned(), images });
    }
    entries
}

fn expand(words: &[&str], sets: &std::collections::HashMap<String, Vec<String>>) -> Vec<String> {
    words
        .iter()
        .flat_map(|word| match word.strip_prefix('@') {
            Some(_) => sets.get(*word).cloned().unwrap_or_default(),
            None => vec![word.to_ascii_lowercase()],
        })
        .collect()
}

/// Settings of the three baselines.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaselinesConfig {
    /// K8S_ServiceAccountRareOperation: learning per service account.
    #[serde(default)]
    pub service_accounts: BaselineConfig,
    /// K8S_KubeSystemContainer: learning of kube-system's workloads, per cluster.
    #[serde(default)]
    pub kube_system: BaselineConfig,
    /// Workloads allowed in kube-system besides the shipped list: `name image...` as in
    /// `detect/data/kube_system_workloads.txt` (`*` in names; `*`/`**` and the shipped `@sets` in images). A name
    /// alone allows any image under that name, which lets anyone who can name a workload hide there.
    #[serde(default)]
    pub kube_system_allow: Vec<String>,
    /// K8S_AbnormalMiActivity: learning per cloud identity.
    #[serde(default)]
    pub cloud_identities: BaselineConfig,
    /// Cloud identity types that cluster add-ons use, as the cloud reader names them; other identities (people,
    /// plain roles) are not profiled.
    #[serde(default = "default_identity_types")]
    pub cloud_identity_types: Vec<String>,
    /// K8S.NODE_KubernetesAPI's baseline: learning per workload of the processes that reach the API server.
    #[serde(default)]
    pub kubernetes_api: BaselineConfig,
    /// Where containers reach the API server: `address:port` (the `kubernetes` Service's ClusterIP) or `:port`
    /// (any address on that port).
    #[serde(default = "default_api_server_addresses")]
    pub api_server_addresses: Vec<String>,
    /// K8S.NODE_ImdsCall's baseline: learning per workload of the processes that reach the metadata service.
    #[serde(default)]
    pub metadata_service: BaselineConfig,
    /// K8S.NODE_SuspectPasswordFileAccess's baseline: learning per workload (per node for host processes) of the
    /// processes that read /etc/shadow or /etc/gshadow.
    #[serde(default)]
    pub shadow_readers: BaselineConfig,
}

/// The `kubernetes` Service's ClusterIP in kubeadm (10.96.0.1), EKS (10.100.0.1, 172.20.0.1) and AKS
/// (10.0.0.1) defaults, and the API server's own port.
fn default_api_server_addresses() -> Vec<String> {
    ["10.96.0.1:443", "10.100.0.1:443", "172.20.0.1:443", "10.0.0.1:443", ":6443"].map(str::to_owned).to_vec()
}

fn default_identity_types() -> Vec<String> {
    ["ManagedIdentity", "WebIdentity", "PodIdentity"].map(str::to_owned).to_vec()
}

impl Default for BaselinesConfig {
    fn default() -> Self {
        Self {
            service_accounts: BaselineConfig::default(),
            kube_system: BaselineConfig::default(),
            kube_system_allow: Vec::new(),
            cloud_identities: BaselineConfig::default(),
            cloud_identity_types: default_identity_types(),
            kubernetes_api: BaselineConfig::default(),
            api_server_addresses: default_api_server_addresses(),
            metadata_service: BaselineConfig::default(),
            shadow_readers: BaselineConfig::default(),
        }
    }
}

fn new_operation_details(finding: &mut Finding, learned_since_ms: i64, known_operations: usize) {
    finding.details.insert("learned_since_ms".into(), learned_since_ms.to_string());
    finding.details.insert("known_operations".into(), known_operations.to_string());
}

/// `get core/pods own-namespace`, `list rbac.authorization.k8s.io/clusterroles cluster`,
/// `create core/pods/exec other-namespace`: what a service account did, without the object's name.
pub fn service_account_operation(event: &AuditEvent, own_namespace: &str) -> Option<String> {
    let resource = event.resource.as_deref()?;
    let group = event.api_group.as_deref().filter(|g| !g.is_empty()).unwrap_or("core");
    let subresource = event.subresource.as_deref().map(|s| format!("/{s}")).unwrap_or_default();
    let scope = match event.namespace.as_deref() {
        None => "cluster",
        Some(namespace) if namespace == own_namespace => "own-namespace",
        Some(_) => "other-namespace",
    };
    Some(format!("{} {group}/{resource}{subresource} {scope}", event.verb))
}

/// K8S_ServiceAccountRareOperation: a service account's operation (verb, resource, subresource, namespace scope)
/// it did not perform during its learning period. Requests are counted whether or not they were allowed: a
/// forbidden attempt is as telling as a successful one.
pub struct ServiceAccountRareOperation {
    profiles: Profiles,
}

impl ServiceAccountRareOperation {
    pub fn new(config: BaselineConfig) -> Self {
        Self { profiles: Profiles::new(config) }
    }
}

impl WindowedDetector for ServiceAccountRareOperation {
    fn state_key(&self) -> crate::unit::StateKey {
        crate::unit::StateKey::AuditUser
    }

    /// Only service accounts are profiled.
    fn wants(&self, event: &Event<'_>) -> bool {
        matches!(event, Event::Audit(audit) if audit.username.starts_with("system:serviceaccount:"))
    }

    fn meta(&self) -> &'static AlertTypeMeta {
        SA_RARE
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        if audit.stage != "ResponseComplete" {
            return Vec::new();
        }
        let Some(account) = audit.username.strip_prefix("system:serviceaccount:") else { return Vec::new() };
        let own_namespace = account.split(':').next().unwrap_or_default();
        let Some(operation) = service_account_operation(audit, own_namespace) else { return Vec::new() };
        let key = format!("{}/{account}", audit.cluster);
        let Verdict::New { learned_since_ms, known_operations } =
            self.profiles.observe(&key, &operation, audit.stage_ms)
        else {
            return Vec::new();
        };
        let mut finding = Finding { subject: operation.clone(), ..Finding::default() };
        finding.details.insert("service_account".into(), account.to_owned());
        finding.details.insert("operation".into(), operation);
        if let Some(code) = audit.response_code {
            finding.details.insert("response_code".into(), code.to_string());
        }
        new_operation_details(&mut finding, learned_since_ms, known_operations);
        vec![finding]
    }

    profile_state!();
}

/// K8S_KubeSystemContainer: a container of a kube-system workload that is neither on the allow-list nor among
/// the workloads learned there. A container is its workload's base name, its name and its image (registry and
/// repository), so a version upgrade is not new but a known name running another image, from another registry
/// included, is. The allow-list binds each name to the images expected for it.
pub struct KubeSystemContainer {
    profiles: Profiles,
    /// The configured lines (`detect.baselines.kube_system_allow`), read after the list's.
    configured: Vec<String>,
    lists: SharedAuditLists,
    /// The allow-list built from the lists it was built from (rebuilt when they are reloaded).
    allow: (Arc<AuditLists>, Vec<KubeSystemAllowed>),
}

/// The list's entries, then the configured ones (which may use the list's @sets: they are read after the list's
/// definitions).
fn build_allow(lists: &AuditLists, configured: &[String]) -> Vec<KubeSystemAllowed> {
    let mut allow = parse_kube_system_allow(&lists.kube_system_workloads);
    let mut lines: Vec<String> = lists.kube_system_workloads.iter().filter(|l| l.starts_with('@')).cloned().collect();
    lines.extend(configured.iter().cloned());
    allow.extend(parse_kube_system_allow(&lines));
    allow
}

impl KubeSystemContainer {
    /// With the shipped lists.
    pub fn new(config: &BaselinesConfig) -> Self {
        Self::with_lists(config, SHIPPED_AUDIT_LISTS.clone())
    }

    pub fn with_lists(config: &BaselinesConfig, lists: SharedAuditLists) -> Self {
        let current = lists.current();
        let allow = build_allow(&current, &config.kube_system_allow);
        let configured = config.kube_system_allow.clone();
        Self { profiles: Profiles::new(config.kube_system), configured, lists, allow: (current, allow) }
    }

    fn allowed(&mut self, base_name: &str, image: &str) -> bool {
        let current = self.lists.current();
        if !Arc::ptr_eq(&current, &self.allow.0) {
            let allow = build_allow(&current, &self.configured);
            self.allow = (current, allow);
        }
        self.allow.1.iter().any(|entry| {
            glob_matches(&entry.workload, base_name)
                && entry.images.as_ref().is_none_or(|images| images.iter().any(|p| glob_matches(p, image)))
        })
    }
}

impl WindowedDetector for KubeSystemContainer {
    fn meta(&self) -> &'static AlertTypeMeta {
        KUBE_SYSTEM
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        if audit.namespace.as_deref() != Some("kube-system") {
            return Vec::new();
        }
        let Some(template) = changed_pod_template(audit) else { return Vec::new() };
        let key = format!("{}/kube-system", audit.cluster);
        let mut findings = Vec::new();
        for container in template.containers() {
            let image = container.image.map(image_name).unwrap_or_else(|| "?".to_owned());
            let operation = format!("{}/{}@{image}", template.base_name, container.name);
            let verdict = self.profiles.observe(&key, &operation, audit.stage_ms);
            let Verdict::New { learned_since_ms, known_operations } = verdict else { continue };
            if self.allowed(&template.base_name, &image) {
                continue;
            }
            let mut finding = Finding {
                subject: format!("{}/{}", template.workload, container.name),
                namespace: Some("kube-system".into()),
                workload: Some(template.workload.clone()),
                image: container.image.map(str::to_owned),
                ..Finding::default()
            };
            finding.details.insert("container".into(), container.name.to_owned());
            finding.details.insert("container_list".into(), container.list.to_owned());
            finding.details.insert("base_workload".into(), template.base_name.clone());
            new_operation_details(&mut finding, learned_since_ms, known_operations);
            findings.push(finding);
        }
        findings
    }

    profile_state!();
}

/// K8S_AbnormalMiActivity: a cloud identity of a type add-ons use (managed identity, web-identity or pod-identity
/// role) performs a cloud operation it did not perform during its learning period.
pub struct AbnormalMiActivity {
    profiles: Profiles,
    identity_types: Vec<String>,
}

impl AbnormalMiActivity {
    pub fn new(config: &BaselinesConfig) -> Self {
        let identity_types = config.cloud_identity_types.iter().map(|t| t.to_lowercase()).collect();
        Self { profiles: Profiles::new(config.cloud_identities), identity_types }
    }
}

impl WindowedDetector for AbnormalMiActivity {
    fn meta(&self) -> &'static AlertTypeMeta {
        ABNORMAL_MI
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Cloud(cloud) = event else { return Vec::new() };
        let Some(identity_type) = cloud.identity_type.as_deref() else { return Vec::new() };
        if !self.identity_types.contains(&identity_type.to_lowercase()) {
            return Vec::new();
        }
        let key = format!("{}/{}", cloud.provider, cloud.identity);
        let operation = cloud.operation.to_lowercase();
        let Verdict::New { learned_since_ms, known_operations } =
            self.profiles.observe(&key, &operation, cloud.timestamp_ms)
        else {
            return Vec::new();
        };
        let mut finding = Finding { subject: operation, ..Finding::default() };
        finding.details.insert("provider".into(), cloud.provider.clone());
        finding.details.insert("identity".into(), cloud.identity.clone());
        finding.details.insert("identity_type".into(), identity_type.to_owned());
        finding.details.insert("operation".into(), cloud.operation.clone());
        if let Some(resource) = &cloud.resource {
            finding.details.insert("resource".into(), resource.clone());
        }
        if let Some(result) = &cloud.result {
            finding.details.insert("result".into(), result.clone());
        }
        new_operation_details(&mut finding, learned_since_ms, known_operations);
        vec![finding]
    }

    profile_state!();
}
