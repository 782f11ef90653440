//! The detect stage: baselines learning, late events, checkpoints, list reloads.

use prometheus::{IntCounterVec, IntGaugeVec, register_int_counter_vec, register_int_gauge_vec};
use std::sync::LazyLock;

static CHECKPOINTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("palisade_checkpoints_total", "Detector state checkpoints written, by stage", &["stage"])
        .expect("metric registers once")
});

static CHECKPOINT_HELD: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "palisade_checkpoint_acknowledged_inputs",
        "Inputs acknowledged by the last checkpoint, by stage",
        &["stage"]
    )
    .expect("metric registers once")
});

static BASELINE_KEYS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "palisade_baseline_keys",
        "Keys (service accounts, clusters, cloud identities) a baseline holds, by alert type and state (learning: \
         inside their learning period; active: past it, new operations alert)",
        &["alert_type", "state"]
    )
    .expect("metric registers once")
});

/// A baseline's learning state: how many of its keys are still learning and how many are active.
pub struct BaselineLearning<'a> {
    pub alert_type: &'a str,
    pub learning: usize,
    pub active: usize,
}

impl BaselineLearning<'_> {
    pub fn emit(self) {
        BASELINE_KEYS.with_label_values(&[self.alert_type, "learning"]).set(self.learning as i64);
        BASELINE_KEYS.with_label_values(&[self.alert_type, "active"]).set(self.active as i64);
    }
}

static LATE_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_detect_late_events_total",
        "Events a windowed detector ignored for arriving later than detect.windows.lateness_secs behind the newest \
         event of their node (or cluster), by alert type",
        &["alert_type"]
    )
    .expect("metric registers once")
});

/// How many events a windowed detector has ignored as late so far; the counter follows that total.
pub struct WindowLateEvents<'a> {
    pub alert_type: &'a str,
    pub total: u64,
}

impl WindowLateEvents<'_> {
    pub fn emit(self) {
        let counter = LATE_EVENTS.with_label_values(&[self.alert_type]);
        let reported = counter.get();
        if self.total > reported {
            if reported == 0 {
                tracing::warn!(alert_type = self.alert_type, "windowed detector ignores late events");
            }
            counter.inc_by(self.total - reported);
        }
    }
}

/// A checkpoint of windowed state was written; the inputs it covers were then acknowledged.
pub struct CheckpointWritten<'a> {
    pub stage: &'a str,
    pub held: usize,
}

impl CheckpointWritten<'_> {
    pub fn emit(self) {
        CHECKPOINTS.with_label_values(&[self.stage]).inc();
        CHECKPOINT_HELD.with_label_values(&[self.stage]).set(self.held as i64);
    }
}

static LIST_RELOAD_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_detect_list_reload_failures_total",
        "Changes to a list's files that did not load (the previous list was kept), by list",
        &["list"]
    )
    .expect("metric registers once")
});

/// A list's files changed and it was read again.
pub struct ListReloaded<'a> {
    pub list: &'a str,
    pub source: &'a str,
}

impl ListReloaded<'_> {
    pub fn emit(self) {
        tracing::info!(list = self.list, source = self.source, "list reloaded");
    }
}

/// A list's files changed but did not load: the previous list is kept. Counted every time; logged when `log`
/// (once per distinct failure, so a file that stays broken does not fill the log).
pub struct ListReloadFailed<'a> {
    pub list: &'a str,
    pub source: &'a str,
    pub error: &'a str,
    pub log: bool,
}

impl ListReloadFailed<'_> {
    /// Failures counted so far for `list`.
    pub fn count(list: &str) -> u64 {
        LIST_RELOAD_FAILURES.with_label_values(&[list]).get()
    }

    pub fn emit(self) {
        LIST_RELOAD_FAILURES.with_label_values(&[self.list]).inc();
        if self.log {
            tracing::warn!(
                list = self.list,
                source = self.source,
                error = self.error,
                "list not reloaded; previous kept"
            );
        }
    }
}
