//! The kernel reader: one thread polls the ring buffer (the programs submit without wakeups, see
//! notes/ebpf-on-these-machines.md), builds `NodeEvent`s and offers them to a bounded channel. A full channel
//! drops the event and counts it; the kernel side counts its own drops (ring buffer full).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_collect_common::{
    COUNTER_ARGV_READ_FAILURES, COUNTER_FOLDED_REPEATS, COUNTER_PATH_UNREADABLE, COUNTER_RINGBUF_DROPS,
    SYSCALL_NAMED_BY_KERNEL,
};
use palisade_schemas::{NodeEvent, NodeEventKind};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::cgroup::CgroupResolver;
use crate::loader;
use crate::process_table::ProcessTable;
use crate::records::{Record, c_string, decode};
use crate::syscalls::Meaning;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot mount tracefs at /sys/kernel/tracing: {0}; mount it or grant CAP_SYS_ADMIN")]
    Tracefs(#[source] std::io::Error),
    #[error("cannot read tracepoint format {path}: {reason}")]
    Format { path: String, reason: String },
    #[error("loading the eBPF programs failed: {0}")]
    Load(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {
    /// Load the eBPF programs. `palisade run` skips them, with a one-line reason, when not root.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// How often the ring buffer is drained, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Bytes of each command line kept (arguments NUL-separated); longer ones are cut and flagged. At most 2048;
    /// at 2048 (the kernel capture's limit) a live process's longer line is completed from /proc, up to 32 KiB.
    #[serde(default = "default_argv_max_bytes")]
    pub argv_max_bytes: usize,
    /// Events held between the kernel reader and the publisher; beyond this, events are dropped and counted.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Most processes kept in the process table.
    #[serde(default = "default_process_table_max_entries")]
    pub process_table_max_entries: usize,
    /// File syscalls (open, unlink, rename, chmod, chown, truncate, utimensat) are reported only for paths that
    /// start with one of these (filtered in the kernel; at most 64 prefixes and 64 suffixes, 64 bytes each).
    #[serde(default = "default_watch_path_prefixes")]
    pub watch_path_prefixes: Vec<String>,
    /// ... or end with one of these.
    #[serde(default = "default_watch_path_suffixes")]
    pub watch_path_suffixes: Vec<String>,
    /// Identical file events (same syscall, arguments and paths) one process may report per second; the rest are
    /// folded in the kernel and counted (`palisade_collect_events_total{what="folded"}`, the process logged once),
    /// so one process rewriting a file in a loop cannot fill the ring buffer. 0: no folding.
    #[serde(default = "default_repeat_limit_per_sec")]
    pub repeat_limit_per_sec: u32,
    /// Leave out processes the collector starts, and their descendants, in the kernel (the collector itself is
    /// always left out).
    #[serde(default = "default_exclude_own_descendants")]
    pub exclude_own_descendants: bool,
    /// Ask the node's CRI runtime for each container's name, image and pod (one call per container, cached).
    #[serde(default = "default_cri_enabled")]
    pub cri_enabled: bool,
    /// The CRI runtime's socket. Unset: the first of `/run/containerd/containerd.sock`, `/run/crio/crio.sock`,
    /// `/run/k3s/containerd/containerd.sock`, `/run/cri-dockerd.sock`, `/var/run/cri-dockerd.sock` that exists;
    /// none existing is normal (logged once) and events carry what the cgroup path gives.
    #[serde(default)]
    pub cri_socket: Option<String>,
    /// Longest wait for one CRI answer, in milliseconds. A call that fails or times out sends its event without
    /// the CRI fields and leaves the runtime alone for a back-off (2 s, doubling to 60 s); a container the
    /// runtime does not know is asked again after 30 s.
    #[serde(default = "default_cri_timeout_ms")]
    pub cri_timeout_ms: u64,
    /// Containers whose CRI answers are kept.
    #[serde(default = "default_cri_cache_max_entries")]
    pub cri_cache_max_entries: usize,
}

fn default_watch_path_prefixes() -> Vec<String> {
    [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/passwd",
        "/etc/sudoers",
        "/etc/ld.so.preload",
        "/etc/cron",
        "/var/spool/cron",
        "/etc/systemd/",
        "/lib/systemd/system/",
        "/usr/lib/systemd/system/",
        "/var/log/",
        "/var/lib/kubelet/",
        "/etc/kubernetes/",
        "/root/.ssh/",
        "/etc/ssh/",
        "/var/run/secrets/kubernetes.io/",
        "/run/secrets/kubernetes.io/",
        "/tmp/",
        "/var/tmp/",
        "/dev/shm/",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn default_watch_path_suffixes() -> Vec<String> {
    ["_history", "/.history", "/authorized_keys", "/authorized_keys2", "/.kube/config", "/id_rsa", "/id_ed25519"]
        .map(str::to_owned)
        .to_vec()
}

const fn default_enabled() -> bool {
    true
}

const fn default_repeat_limit_per_sec() -> u32 {
    100
}

const fn default_exclude_own_descendants() -> bool {
    true
}
const fn default_cri_enabled() -> bool {
    true
}
const fn default_cri_timeout_ms() -> u64 {
    500
}
const fn default_cri_cache_max_entries() -> usize {
    8192
}
const fn default_argv_max_bytes() -> usize {
    palisade_collect_common::ARGV_LIMIT
}
const fn default_poll_interval_ms() -> u64 {
    50
}
const fn default_queue_capacity() -> usize {
    65_536
}
const fn default_process_table_max_entries() -> usize {
    65_536
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            poll_interval_ms: default_poll_interval_ms(),
            argv_max_bytes: default_argv_max_bytes(),
            queue_capacity: default_queue_capacity(),
            process_table_max_entries: default_process_table_max_entries(),
            watch_path_prefixes: default_watch_path_prefixes(),
            watch_path_suffixes: default_watch_path_suffixes(),
            exclude_own_descendants: default_exclude_own_descendants(),
            repeat_limit_per_sec: default_repeat_limit_per_sec(),
            cri_enabled: default_cri_enabled(),
            cri_socket: None,
            cri_timeout_ms: default_cri_timeout_ms(),
            cri_cache_max_entries: default_cri_cache_max_entries(),
        }
    }
}

impl CollectConfig {
    /// The CRI resolver this configuration asks for, if a runtime socket is there. A missing socket is normal
    /// (a node without a CRI runtime, or the socket not mounted into the collector's pod): said once, here.
    pub fn cri_resolver(&self) -> Option<crate::cri::CriResolver> {
        if !self.cri_enabled {
            return None;
        }
        let socket = match &self.cri_socket {
            Some(path) if std::path::Path::new(path).exists() => std::path::PathBuf::from(path),
            Some(path) => {
                tracing::warn!(socket = %path, "collect.cri_socket does not exist; container names and images are off");
                return None;
            }
            None => match crate::cri::find_socket(&crate::cri::DEFAULT_SOCKETS) {
                Some(path) => path,
                None => {
                    tracing::info!("no CRI runtime socket found; node events carry container and pod IDs only");
                    return None;
                }
            },
        };
        tracing::info!(socket = %socket.display(), "container names and images from the CRI runtime");
        Some(crate::cri::CriResolver::new(
            crate::cri::CriClient::new(socket),
            Duration::from_millis(self.cri_timeout_ms.max(1)),
            self.cri_cache_max_entries,
        ))
    }
}

/// Counters the pipeline exports as metrics.
#[derive(Debug, Default)]
pub struct CollectorStats {
    pub exec_events: AtomicU64,
    pub fork_events: AtomicU64,
    pub exit_events: AtomicU64,
    /// File, network, namespace, signal and privilege records.
    pub syscall_events: AtomicU64,
    /// Events the kernel could not put in the ring buffer (it was full).
    pub kernel_drops: AtomicU64,
    /// Exec events whose arguments the kernel could not read (then read from `/proc/<pid>/cmdline`).
    pub kernel_capture_failures: AtomicU64,
    /// Events dropped because the queue to the publisher was full.
    pub queue_drops: AtomicU64,
    /// File events folded in the kernel as one process's repeats (see `CollectConfig::repeat_limit_per_sec`).
    pub folded_repeats: AtomicU64,
    /// File syscalls whose path the kernel could not read from the caller's memory (so not filtered or reported).
    pub paths_unreadable: AtomicU64,
    /// Events from a process whose cgroup nests another pod or container below its own container's scope (see
    /// `cgroup::Attribution::nested`); attributed to the outer container.
    pub nested_cgroups: AtomicU64,
    /// Truncated command lines not completed from /proc because more than `MAX_COMPLETIONS_PER_SEC` came in one
    /// second (an exec storm of padded command lines); they keep the kernel's capture.
    pub argv_completions_skipped: AtomicU64,
    /// Cgroups created with a path longer than the kernel record holds (`CGROUP_PATH_LEN`): not learned, so their
    /// containers are attributed only while the cgroup exists.
    pub cgroup_paths_too_long: AtomicU64,
}

pub struct Collector {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<CollectorStats>,
}

struct Reader {
    node: String,
    boot_id: String,
    boot_wall_offset_ns: i64,
    table: ProcessTable,
    cgroups: CgroupResolver,
    sequence: u64,
    stats: Arc<CollectorStats>,
    /// Cgroups whose nesting was logged (once each, at most 1024).
    nesting_reported: std::collections::HashSet<u64>,
    /// Processes whose folded repeats were logged (once each, at most 1024 at a time; forgotten at exit).
    folding_reported: std::collections::HashSet<u32>,
    /// The path filters, applied again to paths that passed the kernel's only by their spelling.
    filters: crate::paths::Filters,
    /// Truncated command lines completed from /proc in the current second: (second, count).
    completions: (u64, u32),
    /// `collect.argv_max_bytes` is the kernel's limit: a command line cut there is completed from /proc (a
    /// smaller limit is the operator's choice and is kept).
    complete_argv: bool,
}

/// Truncated command lines completed from `/proc/<pid>/cmdline` per second, at most: each is a file read on the
/// reader's thread.
const MAX_COMPLETIONS_PER_SEC: u32 = 200;

impl Collector {
    /// Loads the programs and starts the reader thread. Exec events go to the returned channel; fork and exit
    /// only maintain the process table.
    pub fn start(config: &CollectConfig, node: &str) -> Result<(Self, mpsc::Receiver<NodeEvent>), CollectError> {
        let mut loaded = loader::load(&loader::LoadOptions {
            collector_tgid: std::process::id(),
            path_filters: loader::PathFilters {
                prefixes: &config.watch_path_prefixes,
                suffixes: &config.watch_path_suffixes,
            },
            argv_max_bytes: config.argv_max_bytes.min(palisade_collect_common::ARGV_LIMIT) as u32,
            exclude_descendants: config.exclude_own_descendants,
            repeat_limit: config.repeat_limit_per_sec,
        })?;
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(CollectorStats::default());
        let table = ProcessTable::new(config.process_table_max_entries);
        table.seed_from_proc();
        let mut reader = Reader {
            node: node.to_owned(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_owned(),
            boot_wall_offset_ns: wall_minus_monotonic_ns(),
            table,
            cgroups: CgroupResolver::new(),
            sequence: 0,
            stats: Arc::clone(&stats),
            nesting_reported: std::collections::HashSet::new(),
            folding_reported: std::collections::HashSet::new(),
            filters: crate::paths::Filters::new(&config.watch_path_prefixes, &config.watch_path_suffixes),
            completions: (0, 0),
            complete_argv: config.argv_max_bytes >= palisade_collect_common::ARGV_LIMIT,
        };
        let poll = Duration::from_millis(config.poll_interval_ms.max(1));
        spawn_watched_files_refresh(
            loaded.watched_inodes.take().expect("the loader fills the table"),
            config.watch_path_prefixes.clone(),
            Arc::clone(&stop),
        )?;
        let paused = Arc::new(AtomicBool::new(false));
        let (thread_stop, thread_stats, thread_paused) = (Arc::clone(&stop), Arc::clone(&stats), Arc::clone(&paused));
        let thread = std::thread::Builder::new()
            .name("palisade-collect".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    while !thread_paused.load(Ordering::Relaxed)
                        && let Some(item) = loaded.ring.next()
                    {
                        let event = decode(&item).and_then(|record| reader.handle(record));
                        if let Some(event) = event
                            && sender.try_send(event).is_err()
                        {
                            thread_stats.queue_drops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    for (slot, counter) in [
                        (COUNTER_RINGBUF_DROPS, &thread_stats.kernel_drops),
                        (COUNTER_ARGV_READ_FAILURES, &thread_stats.kernel_capture_failures),
                        (COUNTER_FOLDED_REPEATS, &thread_stats.folded_repeats),
                        (COUNTER_PATH_UNREADABLE, &thread_stats.paths_unreadable),
                    ] {
                        if let Ok(values) = loaded.counters.get(&slot, 0) {
                            counter.store(values.iter().sum(), Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(poll);
                }
                drop(loaded);
            })
            .map_err(|e| CollectError::Load(format!("cannot start the reader thread: {e}")))?;
        Ok((Self { stop, paused, thread: Some(thread), stats }, receiver))
    }

    /// Stops draining the ring buffer (the kernel then counts what does not fit); for tests and maintenance.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// Detaches the programs and stops the reader after a last drain.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How often the watched files are listed again for the kernel's inode table.
const WATCHED_FILES_REFRESH: Duration = Duration::from_secs(30);

/// Lists the watched files again every `WATCHED_FILES_REFRESH` (passwd renames a new shadow over the old one), on
/// a thread of its own: a listing that hangs (a dead network mount) must not stop the ring buffer's reader. Not
/// joined at stop for the same reason; it ends at its next wake-up.
fn spawn_watched_files_refresh(
    mut table: loader::WatchedInodes,
    prefixes: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Result<(), CollectError> {
    std::thread::Builder::new()
        .name("palisade-watched-files".into())
        .spawn(move || {
            let mut warned = false;
            let mut listed = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if listed.elapsed() >= WATCHED_FILES_REFRESH {
                    crate::watched_files::refresh(&mut table, &prefixes, &mut warned);
                    listed = std::time::Instant::now();
                }
            }
        })
        .map(drop)
        .map_err(|e| CollectError::Load(format!("cannot start the watched-files thread: {e}")))
}

fn wall_minus_monotonic_ns() -> i64 {
    let mut monotonic = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut monotonic) };
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    wall - (monotonic.tv_sec * 1_000_000_000 + monotonic.tv_nsec)
}

impl Reader {
    /// Whether one more truncated command line may be completed from /proc this second (counted when not).
    fn may_complete(&mut self, ktime_ns: u64) -> bool {
        let second = ktime_ns / 1_000_000_000;
        if self.completions.0 != second {
            self.completions = (second, 0);
        }
        if self.completions.1 >= MAX_COMPLETIONS_PER_SEC {
            self.stats.argv_completions_skipped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.completions.1 += 1;
        true
    }

    /// Names, once, a process whose repeated file events the kernel folded (the count is the kernel's).
    fn report_folding(&mut self, header: &palisade_collect_common::EventHeader) {
        if header.folded == 0 || self.folding_reported.len() >= 1024 || !self.folding_reported.insert(header.tgid) {
            return;
        }
        let executable = self.table.executable(header.tgid).unwrap_or_default();
        tracing::warn!(
            pid = header.tgid,
            comm = c_string(&header.comm),
            executable,
            folded = header.folded,
            "a process repeats the same file event beyond collect.repeat_limit_per_sec; the repeats are folded"
        );
    }

    /// A `NodeEvent` about the current process of `header`, with what the process table knows of it.
    fn base_event(&mut self, header: &palisade_collect_common::EventHeader, kind: NodeEventKind) -> NodeEvent {
        let attribution = self.cgroups.attribute(header.tgid, header.cgroup_id);
        if attribution.nested {
            self.stats.nested_cgroups.fetch_add(1, Ordering::Relaxed);
            if self.nesting_reported.len() < 1024 && self.nesting_reported.insert(header.cgroup_id) {
                tracing::warn!(
                    pid = header.tgid,
                    cgroup_id = header.cgroup_id,
                    container_id = attribution.container_id.as_deref().unwrap_or_default(),
                    "a process's cgroup nests another pod or container below its own container; attributed to the outer one"
                );
            }
        }
        let (executable, argv) = self.table.command(header.tgid).unwrap_or_default();
        self.sequence += 1;
        NodeEvent {
            event_id: format!("{}/{}/{}/{}", self.node, self.boot_id, header.ktime_ns, self.sequence),
            kind,
            node: self.node.clone(),
            kernel_time_ns: header.ktime_ns as i64,
            timestamp_ms: (header.ktime_ns as i64 + self.boot_wall_offset_ns) / 1_000_000,
            pid: i64::from(header.pid),
            tgid: i64::from(header.tgid),
            ppid: i64::from(self.table.ppid(header.tgid)),
            uid: i64::from(header.uid),
            euid: i64::from(header.uid),
            gid: i64::from(header.gid),
            comm: c_string(&header.comm),
            executable: (!executable.is_empty()).then_some(executable),
            argv,
            argv_truncated: false,
            cwd: None,
            tty: None,
            stdio: Vec::new(),
            capabilities_effective: None,
            cgroup_id: header.cgroup_id as i64,
            in_container: attribution.container_id.is_some(),
            container_id: attribution.container_id,
            pod_uid: attribution.pod_uid,
            container_name: None,
            image: None,
            pod_name: None,
            pod_namespace: None,
            ancestry: self.table.ancestry(header.tgid),
            exit_code: None,
            clone_flags: None,
            file: None,
            net: None,
            namespace: None,
            signal: None,
            privilege: None,
        }
    }

    fn handle(&mut self, record: Record) -> Option<NodeEvent> {
        match record {
            Record::CgroupCreated { id, path } => {
                match path {
                    Some(path) => self.cgroups.learn(id, &path),
                    None => {
                        self.stats.cgroup_paths_too_long.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None
            }
            Record::CgroupRemoved { id } => {
                self.cgroups.forget_cgroup(id);
                None
            }
            Record::Fork { header, child_pid, clone_flags } => {
                self.stats.fork_events.fetch_add(1, Ordering::Relaxed);
                self.table.record_fork(header.tgid, child_pid);
                // The event is about the new process: it runs its parent's image until it execs.
                let mut event = self.base_event(&header, NodeEventKind::Fork);
                event.pid = i64::from(child_pid);
                event.tgid = i64::from(child_pid);
                event.ppid = i64::from(header.tgid);
                event.ancestry = self.table.ancestry(child_pid);
                event.clone_flags = clone_flags.map(|f| f as i64);
                Some(event)
            }
            Record::Send(send) => {
                self.stats.syscall_events.fetch_add(1, Ordering::Relaxed);
                let mut event = self.base_event(&send.header, NodeEventKind::NetSend);
                let mut net = crate::syscalls::sockaddr(&send.sockaddr)?;
                net.protocol = "tcp".into();
                let length = (send.length as usize).min(send.payload.len());
                net.payload_head = Some(send.payload[..length].to_vec());
                event.net = Some(net);
                Some(event)
            }
            Record::Exit { header, exit_code } => {
                self.report_folding(&header);
                self.stats.exit_events.fetch_add(1, Ordering::Relaxed);
                let mut event = self.base_event(&header, NodeEventKind::Exit);
                event.exit_code = exit_code.map(i64::from);
                self.table.record_exit(header.tgid);
                self.cgroups.forget(header.tgid);
                self.folding_reported.remove(&header.tgid);
                Some(event)
            }
            Record::Syscall(event) => {
                self.report_folding(&event.header);
                self.stats.syscall_events.fetch_add(1, Ordering::Relaxed);
                let (kind, meaning) = crate::syscalls::meaning(&event)?;
                let mut node_event = self.base_event(&event.header, kind);
                match meaning {
                    Meaning::File(mut detail) => {
                        // A path the caller passed is folded and joined to its base; a name the kernel kept for
                        // the file (the path it was opened by, or its listed name) is only folded: it is not
                        // relative to this caller's directory. If the text was what passed the kernel's filter (an
                        // odd spelling, a relative path), the filter is applied again to what it names.
                        let named = event.flags & SYSCALL_NAMED_BY_KERNEL != 0;
                        let (first, second) = crate::syscalls::directory_arguments(&event);
                        let (tgid, pid) = (event.header.tgid, event.header.pid);
                        let resolve = |dirfd: Option<i32>, path: &str| {
                            if named { crate::paths::tidy(path) } else { crate::paths::resolve(tgid, pid, dirfd, path) }
                        };
                        let path = resolve(first, &detail.path);
                        let new_path = detail.new_path.as_deref().map(|p| resolve(second, p));
                        let respelled = path != detail.path || new_path != detail.new_path;
                        let watched =
                            self.filters.watches(&path) || new_path.as_deref().is_some_and(|p| self.filters.watches(p));
                        if respelled && !watched {
                            return None;
                        }
                        (detail.path, detail.new_path) = (path, new_path);
                        node_event.file = Some(detail);
                    }
                    Meaning::Net(detail) => node_event.net = Some(detail),
                    Meaning::Namespace(detail) => node_event.namespace = Some(detail),
                    Meaning::Privilege(detail) => node_event.privilege = Some(detail),
                    Meaning::Signal(mut detail) => {
                        let target = detail.target_pid.unsigned_abs() as u32;
                        detail.target_executable = self.table.executable(target).or_else(|| {
                            std::fs::read_link(format!("/proc/{target}/exe")).ok().map(|p| p.display().to_string())
                        });
                        node_event.signal = Some(detail);
                    }
                }
                Some(node_event)
            }
            Record::Exec { header, task, filename, argv, argv_truncated, argv_missing } => {
                self.stats.exec_events.fetch_add(1, Ordering::Relaxed);
                // A descriptor path (`fexecve`, `execveat(fd, "", AT_EMPTY_PATH)`, `/proc/self/fd/N`) names no
                // file: a memfd's name is read from /proc/<pid>/exe (`/memfd:name (deleted)`). Only a memfd is
                // taken from there: by the time it is read the process may have exec'd something else.
                let executable = if names_a_descriptor(&filename) {
                    std::fs::read_link(format!("/proc/{}/exe", header.tgid))
                        .map(|p| p.display().to_string())
                        .ok()
                        .filter(|target| target.starts_with("/memfd:"))
                        .unwrap_or(filename)
                } else if filename.starts_with('/') {
                    filename
                } else {
                    std::fs::read_link(format!("/proc/{}/exe", header.tgid))
                        .map(|p| p.display().to_string())
                        .unwrap_or(filename)
                };
                let argv = if argv_missing {
                    crate::process_table::read_cmdline(header.tgid).map(|(argv, _)| argv).unwrap_or_default()
                } else if argv_truncated && self.complete_argv && self.may_complete(header.ktime_ns) {
                    // Padding past the kernel's capture hides what follows (a pool URL after 2 KiB of spaces):
                    // the rest is read from /proc while the process lives, if it still starts as captured.
                    // `argv_truncated` stays set: the tail is what the process's memory held when read.
                    crate::process_table::complete_argv(header.tgid, argv)
                } else {
                    argv
                };
                // The table keeps the capture's length: every later event of the process (and of its forks)
                // carries the table's command line.
                let ppid = self.table.record_exec(
                    header.tgid,
                    &executable,
                    &crate::process_table::capped_argv(&argv, palisade_collect_common::ARGV_LIMIT),
                );
                let task = crate::task::TaskView::from(&task);
                // The table now holds the new image, so the base event carries it.
                let mut event = self.base_event(&header, NodeEventKind::Exec);
                event.ppid = i64::from(ppid);
                event.euid = task.effective_uid.unwrap_or(event.uid);
                event.executable = Some(executable);
                event.argv = argv;
                event.argv_truncated = argv_truncated;
                event.cwd =
                    std::fs::read_link(format!("/proc/{}/cwd", header.tgid)).ok().map(|p| p.display().to_string());
                event.tty = task.tty;
                event.stdio = task.stdio;
                event.capabilities_effective = task.capabilities_effective;
                Some(event)
            }
        }
    }
}

/// `/dev/fd/N`, `/proc/self/fd/N`, `/proc/<pid>/fd/N`: how the kernel names an exec of a descriptor.
fn names_a_descriptor(path: &str) -> bool {
    // As the kernel reads it: `//` and `/./` are nothing.
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
    matches!(
        parts.as_slice(),
        ["dev", "stdin"] | ["dev", "fd", _] | ["proc", _, "fd", _] | ["proc", _, "task", _, "fd", _]
    )
}

#[cfg(test)]
mod descriptor_paths {
    use super::names_a_descriptor;

    #[test]
    fn descriptor_paths_are_told_from_files() {
        for path in [
            "/dev/fd/3",
            "/proc/self/fd/4",
            "/proc/1234/fd/5",
            "/proc/thread-self/fd/6",
            "/proc//self/fd/7",
            "/dev/./fd/8",
            "/dev/stdin",
            "/proc/self/task/99/fd/9",
        ] {
            assert!(names_a_descriptor(path), "{path}");
        }
        for path in ["/usr/bin/fd", "/proc/self/exe", "/dev/fdx", "/opt/proc/self/fd/3"] {
            assert!(!names_a_descriptor(path), "{path}");
        }
    }
}
