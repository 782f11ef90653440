//! Rust mirrors of the `.avsc` records. Field names and order follow the schemas; the codec tests check
//! that every type round-trips through its schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeEventKind {
    Exec,
    Exit,
    Fork,
    FileOpen,
    FileUnlink,
    FileRename,
    FileTruncate,
    FileChmod,
    FileChown,
    FileUtimes,
    NetConnect,
    NetListen,
    NetAccept,
    NetSend,
    NamespaceChange,
    Signal,
    PrivilegeChange,
}

impl NodeEventKind {
    /// Every kind, in declaration order, which is the schema's symbol order (the Avro enum index; a codec test
    /// checks it). `kind as usize` indexes it; routing tables are sized by it, so a kind missing here would be out
    /// of their bounds: a test checks it is complete.
    pub const ALL: [NodeEventKind; 17] = [
        NodeEventKind::Exec,
        NodeEventKind::Exit,
        NodeEventKind::Fork,
        NodeEventKind::FileOpen,
        NodeEventKind::FileUnlink,
        NodeEventKind::FileRename,
        NodeEventKind::FileTruncate,
        NodeEventKind::FileChmod,
        NodeEventKind::FileChown,
        NodeEventKind::FileUtimes,
        NodeEventKind::NetConnect,
        NodeEventKind::NetListen,
        NodeEventKind::NetAccept,
        NodeEventKind::NetSend,
        NodeEventKind::NamespaceChange,
        NodeEventKind::Signal,
        NodeEventKind::PrivilegeChange,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i64,
    pub executable: String,
    pub argv: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDetail {
    pub path: String,
    pub new_path: Option<String>,
    pub flags: i64,
    pub mode: Option<i64>,
    pub owner_uid: Option<i64>,
    pub owner_gid: Option<i64>,
    pub atime_ns: Option<i64>,
    pub mtime_ns: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDetail {
    pub family: String,
    pub protocol: String,
    pub src_addr: Option<String>,
    pub src_port: Option<i64>,
    pub dst_addr: Option<String>,
    pub dst_port: Option<i64>,
    #[serde(with = "serde_bytes")]
    pub payload_head: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceDetail {
    pub syscall: String,
    pub flags: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalDetail {
    pub signal: i64,
    pub target_pid: i64,
    pub target_executable: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivilegeDetail {
    pub syscall: String,
    pub new_uid: Option<i64>,
    pub new_gid: Option<i64>,
    pub new_capabilities: Option<i64>,
}

/// One runtime event from a node's eBPF collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub event_id: String,
    pub kind: NodeEventKind,
    pub node: String,
    pub kernel_time_ns: i64,
    pub timestamp_ms: i64,
    pub pid: i64,
    pub tgid: i64,
    pub ppid: i64,
    pub uid: i64,
    pub euid: i64,
    pub gid: i64,
    pub comm: String,
    pub executable: Option<String>,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub cwd: Option<String>,
    pub tty: Option<String>,
    pub stdio: Vec<String>,
    pub capabilities_effective: Option<i64>,
    pub cgroup_id: i64,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    /// The container's name, from the node's CRI runtime (schema v2; absent when no CRI socket was reachable).
    #[serde(default)]
    pub container_name: Option<String>,
    /// The container's image as the CRI runtime names it (schema v2).
    #[serde(default)]
    pub image: Option<String>,
    /// The pod's name from the container's CRI labels (schema v2).
    #[serde(default)]
    pub pod_name: Option<String>,
    /// The pod's namespace from the container's CRI labels (schema v2).
    #[serde(default)]
    pub pod_namespace: Option<String>,
    pub in_container: bool,
    pub ancestry: Vec<ProcessRef>,
    pub exit_code: Option<i64>,
    pub clone_flags: Option<i64>,
    pub file: Option<FileDetail>,
    pub net: Option<NetDetail>,
    pub namespace: Option<NamespaceDetail>,
    pub signal: Option<SignalDetail>,
    pub privilege: Option<PrivilegeDetail>,
}

impl NodeEvent {
    /// Kafka key: what a window needs on one partition (node plus container, or the host).
    pub fn partition_key(&self) -> String {
        format!("{}/{}", self.node, self.container_id.as_deref().unwrap_or("host"))
    }
}

/// The fields of an `audit.k8s.io/v1` Event that detectors read, plus the original event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub audit_id: String,
    pub cluster: String,
    pub stage: String,
    pub level: String,
    pub verb: String,
    pub request_uri: String,
    pub username: String,
    pub user_groups: Vec<String>,
    pub impersonated_user: Option<String>,
    pub source_ips: Vec<String>,
    pub user_agent: Option<String>,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub api_group: Option<String>,
    pub api_version: Option<String>,
    pub response_code: Option<i64>,
    pub request_object: Option<String>,
    pub response_object: Option<String>,
    pub request_received_ms: i64,
    pub stage_ms: i64,
    pub annotations: BTreeMap<String, String>,
    pub raw: String,
}

impl AuditEvent {
    /// Kafka key: the namespace (cluster-scoped objects share one key).
    pub fn partition_key(&self) -> String {
        format!("{}/{}", self.cluster, self.namespace.as_deref().unwrap_or("_cluster"))
    }
}

/// One Kubernetes object as the API server's list/watch last showed it (`palisade.cluster.state`, compacted: the
/// newest record of each key is the object now, a null value that it is gone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterObject {
    pub cluster: String,
    pub kind: String,
    /// Empty for the core group.
    pub api_group: String,
    pub api_version: String,
    /// The plural the API serves it under (`pods`, `deployments`), as an audit event names it.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    /// The object's JSON, without `managedFields` and the last-applied annotation.
    pub object: String,
}

impl ClusterObject {
    /// Its key on the topic: `<cluster>/<Kind>/<namespace>/<name>` (the namespace empty for cluster objects).
    pub fn key(&self) -> String {
        object_key(&self.cluster, &self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// The topic key of an object (see `ClusterObject::key`).
pub fn object_key(cluster: &str, kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{cluster}/{kind}/{}/{name}", namespace.unwrap_or_default())
}

/// One cloud control-plane activity record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudActivity {
    pub id: String,
    pub provider: String,
    pub identity: String,
    pub identity_type: Option<String>,
    pub operation: String,
    pub resource: Option<String>,
    pub result: Option<String>,
    pub caller_ip: Option<String>,
    pub timestamp_ms: i64,
    pub raw: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EvidenceSource {
    Audit,
    Node,
    Cloud,
}

impl EvidenceSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            EvidenceSource::Audit => "audit",
            EvidenceSource::Node => "node",
            EvidenceSource::Cloud => "cloud",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: i64,
    pub ppid: i64,
    pub executable: String,
    pub args: Vec<String>,
    pub user: Option<String>,
    pub parent_chain: Vec<String>,
}

/// A detector's finding, before enrichment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    pub id: String,
    pub alert_type: String,
    pub source: EvidenceSource,
    pub timestamp_ms: i64,
    pub detected_at_ms: i64,
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub workload: Option<String>,
    pub container_id: Option<String>,
    pub image: Option<String>,
    pub in_container: Option<bool>,
    pub process: Option<ProcessInfo>,
    pub user: Option<String>,
    pub source_ip: Option<String>,
    pub evidence: Vec<String>,
    pub details: BTreeMap<String, String>,
    /// UID of the pod the evidence ran in (v2): enrich looks the pod up by it when detect did not know it.
    #[serde(default)]
    pub pod_uid: Option<String>,
    /// Labels of that pod, as far as detect knew them (v2).
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
}

/// What the SOC reads: a detection plus the catalogue's words and the enrichment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub alert_type: String,
    pub source: EvidenceSource,
    pub timestamp_ms: i64,
    pub detected_at_ms: i64,
    pub cluster: Option<String>,
    pub node: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub workload: Option<String>,
    pub container_id: Option<String>,
    pub image: Option<String>,
    pub in_container: Option<bool>,
    pub process: Option<ProcessInfo>,
    pub user: Option<String>,
    pub source_ip: Option<String>,
    pub evidence: Vec<String>,
    pub details: BTreeMap<String, String>,
    pub title: String,
    pub severity: String,
    pub tactics: Vec<String>,
    pub techniques: Vec<String>,
    pub description: String,
    pub remediation: String,
    #[serde(default = "default_locale")]
    pub locale: String,
    #[serde(default = "default_count")]
    pub count: i64,
    #[serde(default)]
    pub first_seen_ms: Option<i64>,
    #[serde(default)]
    pub last_seen_ms: Option<i64>,
    /// Threat-intelligence verdicts for the alert's IPs and domains (schema v3).
    #[serde(default)]
    pub threat_intel: Vec<ThreatIntelMatch>,
    /// Kubernetes context fields that apply but could not be resolved (schema v3).
    #[serde(default)]
    pub unknown_fields: Vec<String>,
    /// Labels of the pod a node alert's process ran in (schema v4).
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
}

/// An indicator of the alert found on a threat-intelligence list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreatIntelMatch {
    pub indicator: String,
    /// `ip` or `domain`.
    pub kind: String,
    /// `malicious` or `suspicious`.
    pub verdict: String,
    /// The list's configured name.
    pub list: String,
    /// The entry that matched: the address, a CIDR range, or a parent domain.
    pub matched: String,
    /// Where the indicator was found: `source_ip`, `details.<key>`, `process.args`, `evidence`.
    pub field: String,
}

fn default_locale() -> String {
    "en".to_owned()
}

const fn default_count() -> i64 {
    1
}

#[cfg(test)]
mod node_event_kind_tests {
    use super::NodeEventKind;

    /// Adding a kind breaks this match until it is listed here, and the assertion until it is in `ALL` at its
    /// declaration index.
    #[test]
    fn all_lists_every_kind_at_its_index() {
        let index = |kind: NodeEventKind| match kind {
            NodeEventKind::Exec
            | NodeEventKind::Exit
            | NodeEventKind::Fork
            | NodeEventKind::FileOpen
            | NodeEventKind::FileUnlink
            | NodeEventKind::FileRename
            | NodeEventKind::FileTruncate
            | NodeEventKind::FileChmod
            | NodeEventKind::FileChown
            | NodeEventKind::FileUtimes
            | NodeEventKind::NetConnect
            | NodeEventKind::NetListen
            | NodeEventKind::NetAccept
            | NodeEventKind::NetSend
            | NodeEventKind::NamespaceChange
            | NodeEventKind::Signal
            | NodeEventKind::PrivilegeChange => kind as usize,
        };
        const VARIANTS: usize = 17;
        assert_eq!(NodeEventKind::ALL.len(), VARIANTS);
        for (at, kind) in NodeEventKind::ALL.into_iter().enumerate() {
            assert_eq!(index(kind), at, "{kind:?}");
        }
    }
}
