//! Pod context from the API server: a table of the cluster's pods, filled by a list and kept current by a watch,
//! that enrich reads to complete node alerts whose pod detect did not know (a pod that predates Palisade, or
//! whose create audit event has not arrived yet). Lookups are by pod UID (from the collector's cgroup path) and
//! by container ID (from the pod's container statuses).

mod config;
mod state;
mod table;

pub use config::{KubernetesConfig, WatchError};
pub use state::{ClusterStateWatcher, StateRecord, cluster_object};
pub use table::{ClusterView, PodRecord, lacks_context, pod_record};

#[cfg(test)]
mod tests;
