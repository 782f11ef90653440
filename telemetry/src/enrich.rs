//! Enrichment: suppressed alerts, pod-context lookups and the pod watch.

use prometheus::{
    IntCounterVec, IntGauge, IntGaugeVec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};
use std::sync::LazyLock;

static SUPPRESSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_alerts_suppressed_total",
        "Alerts a suppression rule held back, by alert type and rule",
        &["alert_type", "suppression"]
    )
    .expect("metric registers once")
});

/// A suppression rule held an alert back: it is not sent, and counted here.
pub struct AlertSuppressed<'a> {
    pub alert_type: &'a str,
    pub suppression: &'a str,
}

impl AlertSuppressed<'_> {
    pub fn emit(self) {
        tracing::debug!(alert_type = self.alert_type, suppression = self.suppression, "alert suppressed");
        SUPPRESSED.with_label_values(&[self.alert_type, self.suppression]).inc();
    }
}

static CONTEXT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_enrich_context_total",
        "Container alerts that reached enrich without their pod context, by outcome (table: found in the \
         watched pods at once; waited: found within the bounded wait; unknown: not found when the wait ended; \
         not_waited: sent at once with the fields marked unknown, because the pod watch is not synced or the \
         waiting room is full)",
        &["outcome"]
    )
    .expect("metric registers once")
});

static CONTEXT_WAITING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("palisade_enrich_context_waiting", "Alerts waiting for their pod context", &["stage"])
        .expect("metric registers once")
});

/// What became of a container alert that reached enrich without its pod context.
pub struct ContextLookup<'a> {
    pub outcome: &'a str,
}

impl ContextLookup<'_> {
    pub fn emit(self) {
        CONTEXT.with_label_values(&[self.outcome]).inc();
    }
}

/// How many alerts wait for their pod context now.
pub struct ContextWaiting {
    pub waiting: usize,
}

impl ContextWaiting {
    pub fn emit(self) {
        CONTEXT_WAITING.with_label_values(&["enrich"]).set(self.waiting as i64);
    }
}

static WATCHED_PODS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "palisade_enrich_watched_pods",
        "Pods enrich knows from its list/watch of the API server, and whether the watch is synced (state=synced: 1 \
         or 0)",
        &["state"]
    )
    .expect("metric registers once")
});

static WATCH_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_enrich_watch_restarts_total",
        "Times the pod list/watch started again, by reason (expired: the resource version is too old, a relist; \
         error: the API server could not be reached or refused; closed: the server ended the watch)",
        &["reason"]
    )
    .expect("metric registers once")
});

/// The pod table enrich watches: its size and whether it follows the API server now.
pub struct PodWatchState {
    pub pods: usize,
    pub synced: bool,
}

impl PodWatchState {
    pub fn emit(self) {
        WATCHED_PODS.with_label_values(&["pods"]).set(self.pods as i64);
        WATCHED_PODS.with_label_values(&["synced"]).set(i64::from(self.synced));
    }
}

/// The pod list/watch started again.
pub struct PodWatchRestarted<'a> {
    pub reason: &'a str,
    pub error: Option<&'a str>,
}

impl PodWatchRestarted<'_> {
    pub fn emit(self) {
        match self.error {
            Some(error) => tracing::warn!(reason = self.reason, error, "pod watch restarts"),
            None => tracing::debug!(reason = self.reason, "pod watch restarts"),
        }
        WATCH_RESTARTS.with_label_values(&[self.reason]).inc();
    }
}

static CLUSTER_STATE_WAITING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "palisade_cluster_state_waiting",
        "Objects the list/watch saw that wait to be written to the cluster-state topic (one per object at most; it \
         grows while Kafka does not take them)"
    )
    .expect("metric registers once")
});

/// How many cluster-state records wait for the topic.
pub struct ClusterStateWaiting {
    pub waiting: usize,
}

impl ClusterStateWaiting {
    pub fn emit(self) {
        CLUSTER_STATE_WAITING.set(i64::try_from(self.waiting).unwrap_or(i64::MAX));
    }
}
