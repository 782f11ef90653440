//! The sink: alerts written per output, and retries while an output is unreachable.

use prometheus::{IntCounterVec, register_int_counter_vec};
use std::sync::LazyLock;

static ALERTS_WRITTEN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_sink_alerts_total",
        "Alerts handled by the sink, by output and outcome",
        &["output", "outcome"]
    )
    .expect("metric registers once")
});

static SINK_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_sink_retries_total",
        "Requests to an output that failed and were retried (an outage shows here)",
        &["output"]
    )
    .expect("metric registers once")
});

pub struct AlertsWritten<'a> {
    pub output: &'a str,
    pub outcome: &'a str,
    pub count: u64,
}

impl AlertsWritten<'_> {
    pub fn emit(self) {
        ALERTS_WRITTEN.with_label_values(&[self.output, self.outcome]).inc_by(self.count);
    }
}

/// A request to an output failed and will be retried: counted, and the sink is failing (for `/healthz`) until its
/// next success.
pub struct OutputRetried<'a> {
    pub output: &'a str,
}

impl OutputRetried<'_> {
    pub fn emit(self) {
        SINK_RETRIES.with_label_values(&[self.output]).inc();
        crate::health::failing("sink", &format!("{} unreachable, retrying", self.output));
    }
}
