//! The cluster-state table (services, workloads and their pod templates, configmaps of interest, namespaces) built
//! from audit events, and the two joins over it: K8S_ExposedPostgresTrustAuth (a LoadBalancer Service selecting
//! PostgreSQL pods that trust every client) and K8S_ExposedKubeflow (the Istio ingress gateway on a LoadBalancer in
//! a cluster that runs Kubeflow). A join fires on whichever of its objects arrives second, once, until the
//! exposure goes away. The table is part of the detect stage's checkpoint.

mod detector;
#[cfg(test)]
mod tests;

pub use detector::{ClusterJoins, KUBEFLOW, POSTGRES_TRUST};
