//! Telemetry as typed events: one struct per thing that happens, which logs once and updates its metrics.
//! Metric names: `palisade_<component>_<what>_<unit or total>`, labels in snake_case.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, register_int_counter_vec, register_int_gauge_vec};

/// Installs the `tracing` subscriber: JSON lines when `json`, human text otherwise; `RUST_LOG` filters.
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A closed stderr (a supervisor gone) must not turn a log line into a panic.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

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

static PRODUCED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_stage_produced_total",
        "Records a stage produced, by stage and record",
        &["stage", "record"]
    )
    .expect("metric registers once")
});

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

static COLLECTOR: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_collect_events_total",
        "Node collector records by what happened to them: exec/fork/exit seen, kernel_drop (ring buffer full), \
         capture_failure (argv unreadable in the kernel, read from /proc instead), queue_drop (publisher queue full)",
        &["what"]
    )
    .expect("metric registers once")
});

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

/// Progress of the node collector since the last report; each field is a delta.
pub struct CollectorProgress {
    pub exec: u64,
    pub fork: u64,
    pub exit: u64,
    pub kernel_drops: u64,
    pub capture_failures: u64,
    pub queue_drops: u64,
}

impl CollectorProgress {
    pub fn emit(self) {
        for (what, delta) in [
            ("exec", self.exec),
            ("fork", self.fork),
            ("exit", self.exit),
            ("kernel_drop", self.kernel_drops),
            ("capture_failure", self.capture_failures),
            ("queue_drop", self.queue_drops),
        ] {
            COLLECTOR.with_label_values(&[what]).inc_by(delta);
        }
        if self.kernel_drops + self.queue_drops + self.capture_failures > 0 {
            tracing::warn!(
                kernel_drops = self.kernel_drops,
                queue_drops = self.queue_drops,
                capture_failures = self.capture_failures,
                "node collector dropped events"
            );
        }
    }
}

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

pub struct OutputRetried<'a> {
    pub output: &'a str,
    pub count: u64,
}

impl OutputRetried<'_> {
    pub fn emit(self) {
        if self.count > 0 {
            SINK_RETRIES.with_label_values(&[self.output]).inc_by(self.count);
        }
    }
}

static QUEUE_DEPTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("palisade_queue_depth", "Items waiting in an in-process queue, by queue", &["queue"])
        .expect("metric registers once")
});

static NODE_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("palisade_collect_published_total", "Node events published, by kind", &["kind"])
        .expect("metric registers once")
});

static CRI_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_collect_cri_lookups_total",
        "Calls to the node's CRI runtime for a container's name, image and pod, by outcome (found, not_found, failed; skipped: not asked during the back-off after a failure)",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// One call to the CRI runtime (answers from the collector's cache are not counted).
pub struct CriLookup<'a> {
    pub outcome: &'a str,
}

impl CriLookup<'_> {
    pub fn emit(self) {
        CRI_LOOKUPS.with_label_values(&[self.outcome]).inc();
    }
}

pub struct QueueDepth<'a> {
    pub queue: &'a str,
    pub depth: usize,
}

impl QueueDepth<'_> {
    pub fn emit(self) {
        QUEUE_DEPTH.with_label_values(&[self.queue]).set(self.depth as i64);
    }
}

pub struct NodeEventPublished<'a> {
    pub kind: &'a str,
}

impl NodeEventPublished<'_> {
    pub fn emit(self) {
        NODE_EVENTS.with_label_values(&[self.kind]).inc();
    }
}

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
