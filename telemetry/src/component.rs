//! Components starting and stopping, items dropped on purpose, queue depths.

use prometheus::{IntCounterVec, IntGaugeVec, register_int_counter_vec, register_int_gauge_vec};
use std::sync::LazyLock;

static DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_dropped_total",
        "Items dropped on purpose, by component and reason",
        &["component", "reason"]
    )
    .expect("metric registers once")
});

static COMPONENT_UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("palisade_component_up", "1 while a component runs", &["component"])
        .expect("metric registers once")
});

pub struct ItemDropped<'a> {
    pub component: &'a str,
    pub reason: &'a str,
    pub count: u64,
}

impl ItemDropped<'_> {
    pub fn emit(self) {
        DROPPED.with_label_values(&[self.component, self.reason]).inc_by(self.count);
        tracing::warn!(component = self.component, reason = self.reason, count = self.count, "items dropped");
    }
}

pub struct ComponentStarted<'a> {
    pub component: &'a str,
}

impl ComponentStarted<'_> {
    pub fn emit(self) {
        COMPONENT_UP.with_label_values(&[self.component]).set(1);
        crate::health::started(self.component);
        tracing::info!(component = self.component, "started");
    }
}

pub struct ComponentStopped<'a> {
    pub component: &'a str,
}

impl ComponentStopped<'_> {
    pub fn emit(self) {
        COMPONENT_UP.with_label_values(&[self.component]).set(0);
        crate::health::stopped(self.component);
        tracing::info!(component = self.component, "stopped");
    }
}

/// A component this process is about to start (a stage's service, each stage of `palisade run`): `/readyz`
/// answers 503 until it has started, and its `palisade_component_up` is 0 until then.
pub struct ComponentExpected<'a> {
    pub component: &'a str,
}

impl ComponentExpected<'_> {
    pub fn emit(self) {
        COMPONENT_UP.with_label_values(&[self.component]).set(0);
        crate::health::expect(self.component);
    }
}

/// A component that is configured but not running yet (a source still connecting): its `palisade_component_up`
/// exists and is 0 from the start, so an alert on it fires for one that never comes up.
pub struct ComponentWaiting<'a> {
    pub component: &'a str,
}

impl ComponentWaiting<'_> {
    pub fn emit(self) {
        COMPONENT_UP.with_label_values(&[self.component]).set(0);
    }
}

static QUEUE_DEPTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("palisade_queue_depth", "Items waiting in an in-process queue, by queue", &["queue"])
        .expect("metric registers once")
});

pub struct QueueDepth<'a> {
    pub queue: &'a str,
    pub depth: usize,
}

impl QueueDepth<'_> {
    pub fn emit(self) {
        QUEUE_DEPTH.with_label_values(&[self.queue]).set(self.depth as i64);
    }
}
