//! Baselines over audit and cloud activity: K8S_ServiceAccountRareOperation (a service account's operations),
//! K8S_KubeSystemContainer (the workloads that run in kube-system, plus an allow-list) and K8S_AbnormalMiActivity
//! (a cluster add-on's cloud identity's operations). Each learns per key for a period of event time
//! (`crate::baseline`), and its profiles are part of the detect stage's checkpoint.

mod detector;
#[cfg(test)]
mod tests;

pub use detector::{AbnormalMiActivity, BaselinesConfig, KubeSystemContainer, ServiceAccountRareOperation};
