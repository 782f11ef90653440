//! The node (`K8S.NODE_*`) match rules over eBPF `NodeEvent`s: processes, files and connections, with the lists
//! they use. Windowed node detectors live in `node_windows`.

pub mod detector;
pub mod lists;
pub mod view;

pub use detector::{IMDS_CALL, KUBERNETES_API, NodeRules, PASSWORD_FILE_ACCESS, RULES};
pub use lists::{NodeLists, SharedNodeLists};

#[cfg(test)]
mod tests;
