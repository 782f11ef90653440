//! Services of type LoadBalancer that put a sensitive application on the internet. These decide from the
//! Service alone (name, labels, selector, ports); the join with the pods it selects (cluster state) is the part
//! of the catalogue's `join` kind still to come, as are K8S_ExposedKubeflow and K8S_ExposedPostgresTrustAuth.

mod detector;
#[cfg(test)]
mod tests;

pub use detector::{ExposedDashboard, ExposedPostgresBroadIpRange, ExposedRedis, ExposedService, LoadBalancer};
