//! Services of type LoadBalancer that put a sensitive application on the internet. These decide from the
//! Service alone (name, labels, selector, ports); the joins with the pods it selects (K8S_ExposedKubeflow,
//! K8S_ExposedPostgresTrustAuth) are in `cluster_state`.

mod detector;
#[cfg(test)]
mod tests;

pub use detector::{
    EXPOSED_DASHBOARD, EXPOSED_POSTGRES_BROAD_IP_RANGE, EXPOSED_REDIS, EXPOSED_SERVICE, ExposedDashboard,
    ExposedPostgresBroadIpRange, ExposedRedis, ExposedService, LoadBalancer,
};
