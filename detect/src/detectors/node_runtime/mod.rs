//! The node (`K8S.NODE_*`) match rules over eBPF `NodeEvent`s: processes, files and connections, with the lists
//! they use. Windowed node detectors live in `node_windows`.

pub mod detector;
pub mod lists;
pub mod view;

pub use detector::{IMDS_CALL, KUBERNETES_API, NodeRules, PASSWORD_FILE_ACCESS, RULES};
pub use lists::{NodeLists, SharedNodeLists};

#[cfg(test)]
mod tests;

/// The typical false positives node types share by family (their metadata's `false_positives`), written once.
pub mod false_positives {
    /// For the default for node types.
    pub const ADMIN_TOOLING: &str = "admin tooling that does the same on purpose. Except by `process_path` or `command_line_pattern`, or by `namespace`/`workload` when the alert carries its pod's context.";
    /// For miner types.
    pub const MINER_SCANNING: &str =
        "build or test pipelines that fetch miner sources for scanning. Except by `process_path` or `image`.";
    /// For shell, connection and forwarding types.
    pub const REMOTE_SUPPORT: &str =
        "remote-support tools and SSH tunnels run by operators. Except by `process_path` + `command_line_pattern`.";
    /// For API, kubeconfig and metadata-service types.
    pub const API_CLIENTS: &str = "workloads that legitimately call the API or the metadata service (controllers, cloud SDKs). Except by `image` or `process_path`.";
    /// For password, shadow, account and SSH-key types.
    pub const ACCOUNT_MANAGEMENT: &str =
        "configuration management (Ansible, cloud-init) editing accounts. Except by `process_path`.";
    /// For history, log and timestamp types.
    pub const CLEAN_UP: &str =
        "log rotation and image builds that clean up. Except by `process_path` + `command_line_pattern`.";
}
