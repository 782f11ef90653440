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
