//! Services of type LoadBalancer that put a sensitive application on the internet. `detector.rs` decides from the
//! Service alone (name, labels, selector, ports); `joins.rs` joins a Service with the pods it selects and the
//! cluster around it (K8S_ExposedPostgresTrustAuth, K8S_ExposedKubeflow) over the cluster-state table
//! (`table.rs`), which also gives node alerts their pod context.

mod detector;
mod joins;
#[cfg(test)]
mod joins_tests;
mod seed;
mod table;
#[cfg(test)]
mod tests;

pub use detector::{
    EXPOSED_DASHBOARD, EXPOSED_POSTGRES_BROAD_IP_RANGE, EXPOSED_REDIS, EXPOSED_SERVICE, ExposedDashboard,
    ExposedPostgresBroadIpRange, ExposedRedis, ExposedService, LoadBalancer,
};
pub use joins::{ClusterJoins, KUBEFLOW, POSTGRES_TRUST};
pub use seed::ClusterSeed;
pub use table::hba_trusts_network;
