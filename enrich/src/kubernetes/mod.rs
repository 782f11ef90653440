//! The API server's list/watch (`state.rs`): every object the cluster-state table needs goes to the
//! `palisade.cluster.state` topic detect reads, and the pods also to a table (`table.rs`) that enrich reads to
//! complete node alerts whose pod detect did not know (one whose create audit event has not arrived yet). Lookups
//! are by pod UID (from the collector's cgroup path) and by container ID (from the pod's container statuses).

mod config;
mod state;
mod table;

pub use config::{KubernetesConfig, WatchError};
pub use state::{ClusterStateWatcher, PendingRecords, StateRecord};
pub use table::{ClusterView, PodRecord, lacks_context, pod_record};

#[cfg(test)]
mod tests;
