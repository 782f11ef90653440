//! The node collector: kernel records seen and dropped, CRI lookups, node events published.

use prometheus::{IntCounterVec, register_int_counter_vec};
use std::sync::LazyLock;

static COLLECTOR: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "palisade_collect_events_total",
        "Node collector records by what happened to them: exec/fork/exit seen, kernel_drop (ring buffer full), \
         capture_failure (argv unreadable in the kernel, read from /proc instead), queue_drop (publisher queue full)",
        &["what"]
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
    /// Events from processes whose cgroup nests another pod or container below their own.
    pub nested_cgroups: u64,
    /// File events the kernel folded as one process's repeats.
    pub folded_repeats: u64,
    /// File syscalls whose path the kernel could not read.
    pub paths_unreadable: u64,
    /// Truncated command lines left uncompleted (more than the collector completes from /proc per second).
    pub argv_completions_skipped: u64,
    /// Cgroups created with a path longer than the kernel record holds (their containers are attributed only
    /// while the cgroup exists).
    pub cgroup_paths_too_long: u64,
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
            ("nested_cgroup", self.nested_cgroups),
            ("folded", self.folded_repeats),
            ("path_unreadable", self.paths_unreadable),
            ("argv_completion_skipped", self.argv_completions_skipped),
            ("cgroup_path_too_long", self.cgroup_paths_too_long),
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

pub struct NodeEventPublished<'a> {
    pub kind: &'a str,
}

impl NodeEventPublished<'_> {
    pub fn emit(self) {
        NODE_EVENTS.with_label_values(&[self.kind]).inc();
    }
}
