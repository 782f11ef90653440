//! Baselines over audit and cloud activity: K8S_ServiceAccountRareOperation (a service account's operations),
//! K8S_KubeSystemContainer (the workloads that run in kube-system, plus an allow-list) and K8S_AbnormalMiActivity
//! (a cluster add-on's cloud identity's operations), and over node events the baseline halves of
//! K8S.NODE_KubernetesAPI and K8S.NODE_ImdsCall (the processes of each workload that reach the API server, the
//! metadata service) and K8S.NODE_SuspectPasswordFileAccess (the processes that read the shadow files). Each learns per key for a
//! period of event time (`crate::baseline`), and its profiles are part of the detect stage's checkpoint.

// The `WindowedDetector` methods every baseline implements the same way: its state is its `profiles`, which
// learning bounds by size, not time, so nothing expires.
macro_rules! profile_state {
    () => {
        fn expire(&mut self, _now_ms: i64) {}

        fn snapshot(&self) -> Value {
            self.profiles.snapshot()
        }

        fn restore(&mut self, state: &Value) -> Result<(), String> {
            self.profiles.restore(state)
        }

        fn keys(&self) -> usize {
            self.profiles.keys()
        }

        fn take_keyed_changes(&mut self) -> Option<crate::keyed::KeyedChanges> {
            Some(self.profiles.keyed_changes())
        }

        fn record_changes_from_now(&mut self) {
            self.profiles.record_changes_from_now();
        }

        fn learning(&self) -> Option<LearningState> {
            Some(self.profiles.learning_state())
        }
    };
}

mod detector;
mod node_processes;
#[cfg(test)]
mod tests;

pub use detector::{
    ABNORMAL_MI, AbnormalMiActivity, BaselinesConfig, KUBE_SYSTEM, KubeSystemContainer, SA_RARE,
    ServiceAccountRareOperation,
};
pub use node_processes::{DestinationBaseline, ShadowReaderBaseline};
