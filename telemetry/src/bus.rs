//! Messages on the bus and through the stages: published, unrouted, dead-lettered, processed, produced.

use prometheus::{IntCounterVec, register_int_counter_vec};
use std::sync::LazyLock;

static PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_bus_published_total",
        "Messages published, by topic and outcome",
        &["topic", "outcome"]
    )
    .expect("metric registers once")
});

static UNROUTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_bus_unrouted_total",
        "In-process messages published to a topic nobody subscribed to",
        &["topic"]
    )
    .expect("metric registers once")
});

static DEAD_LETTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_dead_letter_total",
        "Messages sent to the dead-letter topic",
        &["stage", "topic"]
    )
    .expect("metric registers once")
});

static CONSUMED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("palisade_stage_consumed_total", "Messages a stage processed, by stage", &["stage"])
        .expect("metric registers once")
});

static SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_stage_skipped_total",
        "Parts of input a stage passed over as not meant for it (not errors), by stage and reason",
        &["stage", "reason"]
    )
    .expect("metric registers once")
});

static PRODUCED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_stage_produced_total",
        "Records a stage produced, by stage and record",
        &["stage", "record"]
    )
    .expect("metric registers once")
});

pub struct MessagePublished<'a> {
    pub topic: &'a str,
    pub ok: bool,
}

impl MessagePublished<'_> {
    pub fn emit(self) {
        let outcome = if self.ok { "ok" } else { "error" };
        PUBLISHED.with_label_values(&[self.topic, outcome]).inc();
        if !self.ok {
            tracing::warn!(topic = self.topic, "publish failed");
        }
    }
}

pub struct MessageUnrouted<'a> {
    pub topic: &'a str,
}

impl MessageUnrouted<'_> {
    pub fn emit(self) {
        UNROUTED.with_label_values(&[self.topic]).inc();
    }
}

pub struct MessageDeadLettered<'a> {
    pub stage: &'a str,
    pub topic: &'a str,
    pub reason: &'a str,
}

impl MessageDeadLettered<'_> {
    pub fn emit(self) {
        DEAD_LETTERED.with_label_values(&[self.stage, self.topic]).inc();
        tracing::warn!(stage = self.stage, topic = self.topic, reason = self.reason, "message dead-lettered");
    }
}

pub struct MessageProcessed<'a> {
    pub stage: &'a str,
}

impl MessageProcessed<'_> {
    pub fn emit(self) {
        CONSUMED.with_label_values(&[self.stage]).inc();
    }
}

pub struct RecordProduced<'a> {
    pub stage: &'a str,
    pub record: &'a str,
}

impl RecordProduced<'_> {
    pub fn emit(self) {
        PRODUCED.with_label_values(&[self.stage, self.record]).inc();
    }
}

/// Input parts a stage passes over on purpose: an AKS record of another category, a GKE entry of another service.
pub struct RecordsSkipped<'a> {
    pub stage: &'a str,
    pub reason: &'a str,
    pub count: u64,
}

impl RecordsSkipped<'_> {
    pub fn emit(self) {
        SKIPPED.with_label_values(&[self.stage, self.reason]).inc_by(self.count);
    }
}
