//! Palisade's kernel programs. Tracepoints only (fentry, LSM and kprobes are unavailable on the target
//! kernels): `sched_process_exec` emits the exec with the resolved filename and the new image's argv (read from
//! its `mm->arg_start..arg_end`), fork and exit keep the collector's process table. Syscall records are built in
//! a per-CPU scratch record and copied to the ring buffer only when they pass the filters, so the common case (an
//! open of an unwatched path, a clone without new namespaces) never touches the ring buffer. Records go to one
//! ring buffer without wakeups; the collector polls it. The collector's own process is excluded here, in the
//! kernel.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::EbpfContext;
use aya_ebpf::bindings::BPF_RB_NO_WAKEUP;
use aya_ebpf::helpers::generated::{
    bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_user_str,
};
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel,
    bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
};
use aya_ebpf::macros::{map, tracepoint};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::TracePointContext;
use palisade_collect_common::*;

/// Thread group id of the collector; its own activity is not reported. Set by the loader.
#[unsafe(no_mangle)]
static COLLECTOR_TGID: u32 = 0;
/// Offsets of `child_pid` and of `filename`'s `__data_loc` in the tracepoint records; they differ between kernel
/// versions, so the loader reads them from tracefs `format` files.
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: u32 = 20;
#[unsafe(no_mangle)]
static EXEC_FILENAME_OFFSET: u32 = 8;
/// Offsets of `root`, `id` and `path`'s `__data_loc` in the `cgroup_mkdir` and `cgroup_rmdir` records (one event
/// class), from the format.
#[unsafe(no_mangle)]
static CGROUP_MKDIR_ROOT_OFFSET: u32 = 8;
#[unsafe(no_mangle)]
static CGROUP_MKDIR_ID_OFFSET: u32 = 16;
#[unsafe(no_mangle)]
static CGROUP_MKDIR_PATH_OFFSET: u32 = 24;
/// Bytes of argv kept, at most ARGV_LIMIT (configurable: `collect.argv_max_bytes`).
#[unsafe(no_mangle)]
static ARGV_MAX_BYTES: u32 = ARGV_LIMIT as u32;
/// Struct member offsets from the kernel's BTF, slots as `TASK_OFFSET_SLOTS` describes. Set by the loader.
#[unsafe(no_mangle)]
static TASK_OFFSETS: [u32; TASK_OFFSET_SLOTS] = [0; TASK_OFFSET_SLOTS];
/// Identical file events (same syscall, arguments and paths) one process may report per second; the rest are folded and
/// counted, so one process rewriting a file in a loop cannot fill the ring buffer and push out the events of
/// others. 0: no folding. Set by the loader (`collect.repeat_limit_per_sec`).
#[unsafe(no_mangle)]
static REPEAT_LIMIT: u32 = 100;
/// Random per load, so a colliding path cannot be searched for offline.
#[unsafe(no_mangle)]
static REPEAT_SEED: u64 = 0;
/// 1: processes the collector starts (and theirs) are excluded too, not only the collector itself.
#[unsafe(no_mangle)]
static EXCLUDE_DESCENDANTS: u32 = 1;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);
/// Where a syscall record is built before the filters decide; only a kept one is copied to `EVENTS`.
#[map]
static SYSCALL_SCRATCH: PerCpuArray<SyscallEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);
/// Clone flags of the last clone/fork syscall entry of each thread, for `sched_process_fork`.
#[map]
static CLONE_FLAGS: HashMap<u32, u64> = HashMap::with_max_entries(8192, 0);
/// Sockets connected by (tgid << 32 | fd) → their sockaddr, until the first payload is sent.
#[map]
static CONNECTS: LruHashMap<u64, [u8; EXTRA_LEN]> = LruHashMap::with_max_entries(16384, 0);
/// Sockets bound to an internet address by (tgid << 32 | fd), until listen(2).
#[map]
static BOUND: LruHashMap<u64, [u8; EXTRA_LEN]> = LruHashMap::with_max_entries(4096, 0);
/// accept(2) in progress per thread: (listening fd, peer sockaddr pointer).
#[map]
static ACCEPTS: HashMap<u32, [u64; 2]> = HashMap::with_max_entries(4096, 0);

/// Processes descended from the collector (tgid → 1), added at fork, removed at exit.
#[map]
static EXCLUDED: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);
/// The last process to connect a socket, per `tgid % CONNECTOR_SLOTS`: a write by any other process returns after
/// one array read, without the hash lookup of `CONNECTS` (writes are the most frequent syscall hooked). Two live
/// processes whose ids are equal modulo the slot count and that both connect share a slot; the earlier one then
/// loses the first payload of its later connections.
#[map]
static CONNECTORS: Array<u32> = Array::with_max_entries(CONNECTOR_SLOTS, 0);
const CONNECTOR_SLOTS: u32 = 1 << 18;

/// The last few distinct file events of each process (by hash of syscall and path) and how often each came in
/// the current one-second window; what was folded since the process's last record.
#[repr(C)]
#[derive(Clone, Copy)]
struct Repeats {
    window_start_ns: u64,
    hashes: [u64; REPEAT_SLOTS],
    counts: [u32; REPEAT_SLOTS],
    folded: u32,
    next_slot: u32,
}
const REPEAT_SLOTS: usize = 4;
const REPEAT_WINDOW_NS: u64 = 1_000_000_000;
#[map]
static REPEATS: LruHashMap<u32, Repeats> = LruHashMap::with_max_entries(8192, 0);

/// Watched opens in progress, by thread: the path, until the syscall returns the descriptor.
#[map]
static OPENING: LruHashMap<u32, [u8; PATH_LEN]> = LruHashMap::with_max_entries(4096, 0);
/// A file opened from a watched path: the identity of its inode (device, number) and the path it was opened by.
#[repr(C)]
#[derive(Clone, Copy)]
struct WatchedFile {
    identity: [u64; 2],
    path: [u8; PATH_LEN],
}
/// Files opened from a watched path, by the address of their inode. A later ftruncate, fchmod, fchown or
/// futimens on any descriptor of the same file (dup'd, inherited, passed over a socket) is reported under that
/// path, which the program copies from here; only while the inode at that address is still the same file (an
/// address is reused once the inode is freed).
#[map]
static WATCHED_FILES: LruHashMap<u64, WatchedFile> = LruHashMap::with_max_entries(16384, 0);
/// Where `WatchedFile` values are built before they are stored (too large for the stack).
#[map]
static WATCHED_FILE_SCRATCH: PerCpuArray<WatchedFile> = PerCpuArray::with_max_entries(1, 0);

/// The watched files that exist, by (device as the kernel encodes it, inode number) → their path; filled and
/// refreshed by the collector. An open that names one of them by any other path is reported under this one.
#[map]
static WATCHED_INODES: HashMap<[u64; 2], [u8; PATH_LEN]> = HashMap::with_max_entries(MAX_WATCHED_INODES, 0);

/// Filled by the collector from its configuration: watched path prefixes, and suffixes stored reversed.
#[map]
static PATH_PREFIXES: LpmTrie<[u8; PATH_FILTER_LEN], u8> = LpmTrie::with_max_entries(MAX_PATH_FILTERS, 0);
#[map]
static PATH_SUFFIXES: LpmTrie<[u8; PATH_FILTER_LEN], u8> = LpmTrie::with_max_entries(MAX_PATH_FILTERS, 0);

#[inline(always)]
fn global(value: &u32) -> u32 {
    // SAFETY: reading a loader-initialised global; volatile so the compiler keeps the load.
    unsafe { core::ptr::read_volatile(value) }
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(counter) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
fn is_collector(tgid: u32) -> bool {
    // SAFETY: a presence check; the value is not used.
    tgid == global(&COLLECTOR_TGID) || unsafe { EXCLUDED.get(&tgid) }.is_some()
}

#[inline(always)]
fn task_offset(slot: usize) -> usize {
    // SAFETY: reading a loader-initialised global; volatile so the compiler keeps the load.
    unsafe { core::ptr::read_volatile(&TASK_OFFSETS[slot]) as usize }
}

/// Reads a kernel pointer stored at `base + offset`.
#[inline(always)]
fn kernel_pointer(base: *const u8, offset: usize) -> Result<*const u8, i64> {
    // SAFETY: the helper checks the address and fails instead of faulting.
    let pointer: *const u8 = unsafe { bpf_probe_read_kernel(base.wrapping_add(offset) as *const *const u8) }?;
    if pointer.is_null() { Err(0) } else { Ok(pointer) }
}

/// Effective credentials, descriptors 0-2 and the controlling terminal of the current task.
#[inline(always)]
fn read_task(info: &mut TaskInfo) {
    // SAFETY: the helper has no preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    info.read = 0;
    info.stdio_open = 0;
    info.tty[0] = 0;
    if let Ok(cred) = kernel_pointer(task, task_offset(0)) {
        // SAFETY: helper reads at BTF offsets inside the task's credentials.
        let euid = unsafe { bpf_probe_read_kernel(cred.wrapping_add(task_offset(1)) as *const u32) };
        let caps = unsafe { bpf_probe_read_kernel(cred.wrapping_add(task_offset(2)) as *const u64) };
        if let (Ok(euid), Ok(caps)) = (euid, caps) {
            info.euid = euid;
            info.cap_effective = caps;
            info.read |= TASK_READ_CRED;
        }
    }
    let descriptors = kernel_pointer(task, task_offset(3))
        .and_then(|files| kernel_pointer(files, task_offset(4)))
        .and_then(|fdtable| kernel_pointer(fdtable, task_offset(5)));
    if let Ok(descriptors) = descriptors {
        info.read |= TASK_READ_FILES;
        for fd in 0..3 {
            info.stdio_mode[fd] = 0;
            info.stdio_rdev[fd] = 0;
            info.stdio_ino[fd] = 0;
            let Ok(file) = kernel_pointer(descriptors, fd * 8) else { continue };
            info.stdio_open |= 1 << fd;
            let Ok(inode) = kernel_pointer(file, task_offset(6)) else { continue };
            // SAFETY: helper reads at BTF offsets inside the inode.
            info.stdio_mode[fd] =
                unsafe { bpf_probe_read_kernel(inode.wrapping_add(task_offset(7)) as *const u16) }.unwrap_or(0);
            info.stdio_rdev[fd] =
                unsafe { bpf_probe_read_kernel(inode.wrapping_add(task_offset(8)) as *const u32) }.unwrap_or(0);
            info.stdio_ino[fd] =
                unsafe { bpf_probe_read_kernel(inode.wrapping_add(task_offset(20)) as *const u64) }.unwrap_or(0);
        }
    }
    let tty = kernel_pointer(task, task_offset(9)).and_then(|signal| kernel_pointer(signal, task_offset(10)));
    if let Ok(tty) = tty {
        // SAFETY: helper read of the name array inside the tty.
        if unsafe { bpf_probe_read_kernel_str_bytes(tty.wrapping_add(task_offset(11)), &mut info.tty) }.is_ok() {
            info.read |= TASK_READ_TTY;
        }
    }
}

#[inline(always)]
fn header(kind: u32) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    EventHeader {
        kind,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        folded: 0,
        // SAFETY: helpers without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = emit_exec(&ctx);
    0
}

fn emit_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let header = header(KIND_EXEC);
    if is_collector(header.tgid) {
        return Ok(());
    }
    // A new image starts with no repeats: a wrapper cannot use up the count for the program it runs.
    let _ = REPEATS.remove(&header.tgid);
    // SAFETY: tracepoint record read at the offset from its format.
    let data_loc: u32 = unsafe { ctx.read_at(global(&EXEC_FILENAME_OFFSET) as usize) }.map_err(i64::from)?;
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved ring-buffer record of the right size; every field read by userspace
    // is written below (argv only up to argv_len).
    unsafe {
        (*event).header = header;
        read_task(&mut (*event).task);
        let filename = (ctx.as_ptr() as *const u8).add((data_loc & 0xFFFF) as usize);
        if bpf_probe_read_kernel_str_bytes(filename, &mut (*event).filename).is_err() {
            (*event).filename[0] = 0;
        }
        read_argv(&mut *event);
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    Ok(())
}

/// A cgroup created on the v2 hierarchy (root 0; the v1 hierarchies' ids are not the ones events carry): its id
/// and path, so a container whose process exits and whose cgroup is removed before the collector reads its events
/// is still attributed. A runtime creates the cgroup before any process runs in it, so the record is ahead of
/// theirs in the ring.
#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    let _ = emit_cgroup(&ctx, false);
    0
}

/// A cgroup removed: it is empty, every event of a process in it is ahead in the ring, and the collector forgets
/// it (a loop creating and removing cgroups does not grow its cache).
#[tracepoint]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    let _ = emit_cgroup(&ctx, true);
    0
}

fn emit_cgroup(ctx: &TracePointContext, removed: bool) -> Result<(), i64> {
    // SAFETY: tracepoint record reads at the offsets from its format.
    let root: i32 = unsafe { ctx.read_at(global(&CGROUP_MKDIR_ROOT_OFFSET) as usize) }.map_err(i64::from)?;
    if root != 0 {
        return Ok(());
    }
    let id: u64 = unsafe { ctx.read_at(global(&CGROUP_MKDIR_ID_OFFSET) as usize) }.map_err(i64::from)?;
    let data_loc: u32 = unsafe { ctx.read_at(global(&CGROUP_MKDIR_PATH_OFFSET) as usize) }.map_err(i64::from)?;
    let Some(mut entry) = EVENTS.reserve::<CgroupEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved ring-buffer record of the right size; every field read by userspace is
    // written below (the path only for a creation).
    unsafe {
        (*event).header = header(KIND_CGROUP);
        (*event).id = id;
        (*event).length = data_loc >> 16;
        (*event).removed = u32::from(removed);
        (*event).path[0] = 0;
        if !removed {
            let path = (ctx.as_ptr() as *const u8).add((data_loc & 0xFFFF) as usize);
            if bpf_probe_read_kernel_str_bytes(path, &mut (*event).path).is_err() {
                (*event).path[0] = 0;
            }
        }
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    Ok(())
}

/// The new image's arguments, NUL-separated as execve laid them out at `mm->arg_start..arg_end` (for a `#!`
/// script: the interpreter, its argument, the script path, then the script's arguments — what `/proc/<pid>/cmdline`
/// shows). At most `ARGV_MAX_BYTES`; a longer area is cut and flagged.
#[inline(always)]
fn read_argv(event: &mut ExecEvent) {
    event.argv_len = 0;
    event.flags = FLAG_ARGV_MISSING;
    // SAFETY: the helper has no preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let Ok(mm) = kernel_pointer(task, task_offset(12)) else {
        count(COUNTER_ARGV_READ_FAILURES);
        return;
    };
    // SAFETY: helper reads at BTF offsets inside the task's mm.
    let start = unsafe { bpf_probe_read_kernel(mm.wrapping_add(task_offset(13)) as *const u64) };
    let end = unsafe { bpf_probe_read_kernel(mm.wrapping_add(task_offset(14)) as *const u64) };
    let (Ok(start), Ok(end)) = (start, end) else {
        count(COUNTER_ARGV_READ_FAILURES);
        return;
    };
    if end <= start {
        count(COUNTER_ARGV_READ_FAILURES);
        return;
    }
    let limit = (global(&ARGV_MAX_BYTES) as u64).min(ARGV_LIMIT as u64);
    let mut flags = 0;
    let mut length = end - start;
    if length > limit {
        length = limit;
        flags |= FLAG_ARGV_TRUNCATED;
    }
    let size = length as u32;
    if size == 0 || size > ARGV_LIMIT as u32 {
        return;
    }
    // SAFETY: user memory of the current task read through the helper, at most ARGV_LIMIT bytes into a buffer
    // that size (the bound is checked just above, where the verifier sees it).
    let read = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            event.argv.as_mut_ptr() as *mut c_void,
            size,
            start as *const c_void,
        )
    };
    if read != 0 {
        count(COUNTER_ARGV_READ_FAILURES);
        return;
    }
    event.argv_len = size;
    event.flags = flags;
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let header = header(KIND_FORK);
    // SAFETY: tracepoint record read at the offset from its format.
    let Ok(child_pid) = (unsafe { ctx.read_at::<i32>(global(&FORK_CHILD_PID_OFFSET) as usize) }) else {
        return 0;
    };
    // SAFETY: the value is copied out before the entry is removed.
    let flags = unsafe { CLONE_FLAGS.get(&header.pid) }.copied();
    let _ = CLONE_FLAGS.remove(&header.pid);
    // A new thread is not a new process: nothing to report or track.
    if flags.is_some_and(|f| f & CLONE_THREAD != 0) {
        return 0;
    }
    if is_collector(header.tgid) {
        if global(&EXCLUDE_DESCENDANTS) != 0 {
            let _ = EXCLUDED.insert(&(child_pid as u32), &1, 0);
        }
        return 0;
    }
    let event = ForkEvent {
        header,
        child_pid: child_pid as u32,
        has_flags: u32::from(flags.is_some()),
        clone_flags: flags.unwrap_or(0),
    };
    if EVENTS.output::<ForkEvent>(&event, BPF_RB_NO_WAKEUP as u64).is_err() {
        count(COUNTER_RINGBUF_DROPS);
    }
    0
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Threads exit too; only the thread-group leader's exit ends the process.
    if pid_tgid as u32 != (pid_tgid >> 32) as u32 {
        return 0;
    }
    let mut header = header(KIND_EXIT);
    if is_collector(header.tgid) {
        let _ = EXCLUDED.remove(&header.tgid);
        return 0;
    }
    if let Some(slot) = CONNECTORS.get_ptr_mut(header.tgid % CONNECTOR_SLOTS) {
        // SAFETY: an array slot; single aligned load and store.
        unsafe {
            if core::ptr::read_volatile(slot) == header.tgid {
                core::ptr::write_volatile(slot, 0);
            }
        }
    }
    // do_exit has stored the wait status in `task_struct.exit_code`: the status in bits 8-15 after exit(2) or
    // exit_group(2), the signal number in bits 0-6 when a signal killed the process.
    // SAFETY: the helper has no preconditions; the read is at a BTF offset inside the current task.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let status = unsafe { bpf_probe_read_kernel(task.wrapping_add(task_offset(15)) as *const i32) }.unwrap_or(-1);
    let exited = status >= 0 && status & 0x7f == 0;
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(repeats) = unsafe { REPEATS.get(&header.tgid) } {
        header.folded = repeats.folded;
        let _ = REPEATS.remove(&header.tgid);
    }
    let event = ExitEvent {
        header,
        exit_code: if exited { (status >> 8) & 0xff } else { 0 },
        has_exit_code: u32::from(exited),
    };
    if EVENTS.output::<ExitEvent>(&event, BPF_RB_NO_WAKEUP as u64).is_err() {
        count(COUNTER_RINGBUF_DROPS);
    }
    0
}

// ---- syscall entries ------------------------------------------------------------------------------------------
// Every `syscalls/sys_enter_*` record has `__syscall_nr` at 8 and argument n at 16 + 8 * n.

#[inline(always)]
fn arg(ctx: &TracePointContext, index: usize) -> u64 {
    // SAFETY: reading the tracepoint record; callers pass only indices the syscall has.
    unsafe { ctx.read_at::<u64>(16 + 8 * index) }.unwrap_or(0)
}

#[inline(always)]
fn read_user_path(pointer: u64, destination: &mut [u8; PATH_LEN]) -> usize {
    if pointer == 0 {
        destination[0] = 0;
        return 0;
    }
    // SAFETY: user pointer read through the helper, which fails instead of faulting.
    let read = unsafe {
        bpf_probe_read_user_str(destination.as_mut_ptr() as *mut c_void, PATH_LEN as u32, pointer as *const c_void)
    };
    if read <= 0 {
        // The syscall may still succeed (a path on a page not yet faulted in): counted, as it is not filtered.
        count(COUNTER_PATH_UNREADABLE);
        destination[0] = 0;
        return 0;
    }
    read as usize - 1
}

/// True when `path[..length]` starts with a watched prefix or ends with a watched suffix.
#[inline(always)]
fn path_matches(path: &[u8; PATH_LEN], length: usize) -> bool {
    if length == 0 {
        return false;
    }
    let head = if length < PATH_FILTER_LEN { length } else { PATH_FILTER_LEN };
    let mut key = Key::new((head * 8) as u32, [0u8; PATH_FILTER_LEN]);
    key.data.copy_from_slice(&path[..PATH_FILTER_LEN]);
    if PATH_PREFIXES.get(&key).is_some() {
        return true;
    }
    // A relative path (`authorized_keys` from ~/.ssh) is read as if a `/` preceded it, so suffixes that start with
    // one still match. Every write is inside the loop, at the loop's own bounded index.
    let relative = path[0] != b'/';
    let mut reversed = [0u8; PATH_FILTER_LEN];
    for index in 0..PATH_FILTER_LEN {
        if index < head {
            reversed[index] = path[(length - 1 - index) & (PATH_LEN - 1)];
        } else if index == head && relative {
            reversed[index] = b'/';
        } else {
            break;
        }
    }
    let bits = if relative && head < PATH_FILTER_LEN { head * 8 + 8 } else { head * 8 };
    PATH_SUFFIXES.get(&Key::new(bits as u32, reversed)).is_some()
}

/// A path whose text does not say where it leads: a `//`, `.` or `..` segment (`/etc//cron.d/x`,
/// `/usr/../etc/passwd`), or one cut at the read limit. Passed to the collector, which folds it and applies the
/// filters again; rare in ordinary programs.
#[inline(always)]
fn odd_spelling(path: &[u8; PATH_LEN], length: usize) -> bool {
    if length >= PATH_LEN - 1 {
        return true;
    }
    for index in 0..PATH_LEN - 1 {
        if index >= length {
            break;
        }
        // A segment starts at 0 (a relative path) or after a slash.
        let starts = index == 0 || path[(index - 1) & (PATH_LEN - 1)] == b'/';
        if !starts {
            continue;
        }
        let first = path[index & (PATH_LEN - 1)];
        let second = path[(index + 1) & (PATH_LEN - 1)];
        let third = path[(index + 2) & (PATH_LEN - 1)];
        let end = |byte: u8| byte == b'/' || byte == 0;
        // An empty segment (`//`), `.` or `..`.
        if (first == b'/' && index > 0) || (first == b'.' && (end(second) || (second == b'.' && end(third)))) {
            return true;
        }
    }
    false
}

/// Where a syscall's paths are: argument indices of the first and second path (if any).
#[derive(Clone, Copy)]
struct Paths {
    first: Option<usize>,
    second: Option<usize>,
}

const NO_PATHS: Paths = Paths { first: None, second: None };

/// Builds the record in the per-CPU scratch slot (ids, arguments, paths); the path filters and then `keep`
/// (which sees the record, with only `pid` and `tgid` of its header set) decide whether it is completed and
/// copied to the ring buffer. A record that is not kept costs no ring-buffer space or lock.
#[inline(always)]
fn emit_syscall(
    ctx: &TracePointContext,
    syscall: u32,
    arguments: usize,
    paths: Paths,
    keep: impl FnOnce(&mut SyscallEvent) -> bool,
) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if is_collector(tgid) {
        return;
    }
    let Some(event) = SYSCALL_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: the per-CPU scratch slot belongs to this program invocation (tracepoint programs do not nest on a
    // CPU); the fields userspace reads are written below (paths are NUL-terminated by the read helpers or set
    // empty) before it is copied out.
    let event = unsafe { &mut *event };
    event.header.pid = pid_tgid as u32;
    event.header.tgid = tgid;
    event.syscall = syscall;
    event.flags = 0;
    for index in 0..6 {
        event.args[index] = if index < arguments { arg(ctx, index) } else { 0 };
    }
    event.path[0] = 0;
    event.path2[0] = 0;
    event.extra = [0; EXTRA_LEN];
    let mut matched = paths.first.is_none() && paths.second.is_none();
    if let Some(first) = paths.first {
        let length = read_user_path(event.args[first.min(5)], &mut event.path);
        matched |= path_matches(&event.path, length) || odd_spelling(&event.path, length);
    }
    if let Some(second) = paths.second {
        let length = read_user_path(event.args[second.min(5)], &mut event.path2);
        matched |= path_matches(&event.path2, length) || odd_spelling(&event.path2, length);
    }
    if !(matched && keep(event)) {
        return;
    }
    event.header = header(KIND_SYSCALL);
    if event.path[0] != 0 && folded_as_repeat(event) {
        return;
    }
    let (tgid, folded) = (event.header.tgid, event.header.folded);
    if EVENTS.output::<SyscallEvent>(event, BPF_RB_NO_WAKEUP as u64).is_err() {
        count(COUNTER_RINGBUF_DROPS);
    } else {
        folds_reported(tgid, folded);
    }
}

/// FNV-1a, seeded per load, of everything a record says: the syscall, its arguments, both paths and the extra
/// bytes. Only the very same act repeats; the same path with another mode, flags or destination does not.
#[inline(always)]
fn record_hash(event: &SyscallEvent) -> u64 {
    // SAFETY: reading a loader-initialised global; volatile so the compiler keeps the load.
    let seed = unsafe { core::ptr::read_volatile(&REPEAT_SEED) };
    let mut hash: u64 = (0xcbf2_9ce4_8422_2325 ^ seed ^ u64::from(event.syscall)).wrapping_mul(0x0100_0000_01b3);
    // Pointers are left out (a loop may pass its path from a new buffer each time); what they point to is hashed.
    let pointers = pointer_arguments(event.syscall);
    for index in 0..6 {
        let argument = if pointers & (1 << index) == 0 { event.args[index] } else { 0 };
        hash = (hash ^ argument).wrapping_mul(0x0100_0000_01b3);
    }
    for chunk in 0..EXTRA_LEN / 8 {
        let word = u64::from_ne_bytes([
            event.extra[chunk * 8],
            event.extra[chunk * 8 + 1],
            event.extra[chunk * 8 + 2],
            event.extra[chunk * 8 + 3],
            event.extra[chunk * 8 + 4],
            event.extra[chunk * 8 + 5],
            event.extra[chunk * 8 + 6],
            event.extra[chunk * 8 + 7],
        ]);
        hash = (hash ^ word).wrapping_mul(0x0100_0000_01b3);
    }
    hash = hash_path(hash, &event.path);
    if event.path2[0] != 0 {
        hash = hash_path(hash ^ 0x2f, &event.path2);
    }
    hash
}

/// Which arguments of a file syscall are user pointers (bit n: argument n): its paths, `open_how`, the timespecs.
#[inline(always)]
fn pointer_arguments(syscall: u32) -> u8 {
    match syscall {
        SYS_OPEN | SYS_CREAT | SYS_UNLINK | SYS_CHMOD | SYS_CHOWN | SYS_LCHOWN | SYS_TRUNCATE => 0b1,
        SYS_RENAME => 0b11,
        SYS_OPENAT | SYS_UNLINKAT | SYS_FCHMODAT | SYS_FCHMODAT2 | SYS_FCHOWNAT => 0b10,
        SYS_OPENAT2 | SYS_UTIMENSAT => 0b110,
        SYS_RENAMEAT | SYS_RENAMEAT2 => 0b1010,
        _ => 0,
    }
}

#[inline(always)]
fn hash_path(mut hash: u64, path: &[u8; PATH_LEN]) -> u64 {
    for index in 0..PATH_LEN {
        let byte = path[index];
        if byte == 0 {
            break;
        }
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// True when this file event repeats one of the process's last few beyond `REPEAT_LIMIT` in this second: it is
/// folded (counted) instead of reported. A reported event carries the count folded since the last one.
#[inline(always)]
fn folded_as_repeat(event: &mut SyscallEvent) -> bool {
    let limit = global(&REPEAT_LIMIT);
    if limit == 0 {
        return false;
    }
    let hash = record_hash(event);
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let tgid = event.header.tgid;
    let Some(state) = REPEATS.get_ptr_mut(&tgid) else {
        let mut fresh = Repeats {
            window_start_ns: now,
            hashes: [0; REPEAT_SLOTS],
            counts: [0; REPEAT_SLOTS],
            folded: 0,
            next_slot: 1,
        };
        fresh.hashes[0] = hash;
        fresh.counts[0] = 1;
        let _ = REPEATS.insert(&tgid, &fresh, 0);
        return false;
    };
    // SAFETY: a live map value; threads of one process racing here only skew the counts.
    let state = unsafe { &mut *state };
    if now.wrapping_sub(state.window_start_ns) >= REPEAT_WINDOW_NS {
        state.window_start_ns = now;
        state.counts = [0; REPEAT_SLOTS];
    }
    let mut known = false;
    for slot in 0..REPEAT_SLOTS {
        if state.hashes[slot] == hash {
            if state.counts[slot] >= limit {
                state.folded = state.folded.saturating_add(1);
                count(COUNTER_FOLDED_REPEATS);
                return true;
            }
            state.counts[slot] += 1;
            known = true;
            break;
        }
    }
    if !known {
        let slot = state.next_slot as usize % REPEAT_SLOTS;
        state.next_slot = state.next_slot.wrapping_add(1);
        state.hashes[slot] = hash;
        state.counts[slot] = 1;
    }
    // Cleared once the record that carries it is in the ring buffer (`folds_reported`).
    event.header.folded = state.folded;
    false
}

/// The record that carried this process's folded count reached the ring buffer: the count starts again.
#[inline(always)]
fn folds_reported(tgid: u32, reported: u32) {
    if reported == 0 {
        return;
    }
    if let Some(state) = REPEATS.get_ptr_mut(&tgid) {
        // SAFETY: a live map value.
        let state = unsafe { &mut *state };
        state.folded = state.folded.saturating_sub(reported);
    }
}

macro_rules! path_syscall {
    ($program:ident, $syscall:expr, $arguments:expr, $first:expr, $second:expr) => {
        path_syscall!($program, $syscall, $arguments, $first, $second, |_| true);
    };
    ($program:ident, $syscall:expr, $arguments:expr, $first:expr, $second:expr, $keep:expr) => {
        #[tracepoint]
        pub fn $program(ctx: TracePointContext) -> u32 {
            emit_syscall(&ctx, $syscall, $arguments, Paths { first: $first, second: $second }, $keep);
            0
        }
    };
}

/// The `struct file` behind descriptor `fd` of the current process.
#[inline(always)]
fn descriptor_file(fd: u64) -> Option<*const u8> {
    // The kernel takes descriptors as `unsigned int`: the upper half of the register is ignored.
    let fd = fd as u32;
    // SAFETY: the helper has no preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let fdtable = kernel_pointer(task, task_offset(3)).and_then(|files| kernel_pointer(files, task_offset(4))).ok()?;
    // SAFETY: helper read of `fdtable.max_fds`.
    let max = unsafe { bpf_probe_read_kernel(fdtable.wrapping_add(task_offset(24)) as *const u32) }.ok()?;
    if fd >= max {
        return None;
    }
    let descriptors = kernel_pointer(fdtable, task_offset(5)).ok()?;
    kernel_pointer(descriptors, fd as usize * 8).ok()
}

/// (device as in `super_block.s_dev`, inode number) of an inode: what stays the same while it is the same file.
#[inline(always)]
fn inode_identity(inode: *const u8) -> [u64; 2] {
    // SAFETY: helper reads at BTF offsets inside the inode and its super block.
    let number: u64 = unsafe { bpf_probe_read_kernel(inode.wrapping_add(task_offset(20)) as *const u64) }.unwrap_or(0);
    let device: u32 = kernel_pointer(inode, task_offset(21))
        .ok()
        .and_then(|block| unsafe { bpf_probe_read_kernel(block.wrapping_add(task_offset(22)) as *const u32) }.ok())
        .unwrap_or(0);
    [u64::from(device), number]
}

/// Remembers that the file at `inode` was opened as `path` (a map value of PATH_LEN bytes).
#[inline(always)]
fn watch_file(inode: *const u8, identity: [u64; 2], path: *const [u8; PATH_LEN]) {
    let Some(value) = WATCHED_FILE_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: the per-CPU scratch slot belongs to this invocation; the path is copied by the read helper from a
    // live map value of the same size.
    let value = unsafe { &mut *value };
    value.identity = identity;
    if unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(path as *const u8, &mut value.path) }.is_ok() {
        let _ = WATCHED_FILES.insert(&(inode as u64), value, 0);
    }
}

/// The file behind descriptor `fd`: its inode's address, the key of `WATCHED_FILES`.
#[inline(always)]
fn descriptor_inode(fd: u64) -> Option<u64> {
    kernel_pointer(descriptor_file(fd)?, task_offset(6)).ok().map(|inode| inode as u64)
}

/// A watched open (the filters passed): its path is kept until the syscall returns (`open_exit`).
#[inline(always)]
fn opening(event: &mut SyscallEvent) -> bool {
    let _ = OPENING.insert(&event.header.pid, &event.path, 0);
    true
}

/// The open returned. A descriptor of a file opened from a watched path makes the file watched. Every
/// descriptor is also checked by device and inode against `WATCHED_INODES`: a watched file reached by a path that
/// did not say so (or said another watched path, such as `/tmp/link`) is reported under its own name.
#[inline(always)]
fn open_exit(ctx: &TracePointContext) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let returned = arg(ctx, 0) as i64;
    let opening = OPENING.get_ptr(&tid);
    // SAFETY: the value is copied out before the entry is removed.
    let asked = unsafe { OPEN_FLAGS.get(&tid) }.copied();
    if asked.is_some() {
        let _ = OPEN_FLAGS.remove(&tid);
    }
    if returned >= 0
        && let Some(file) = descriptor_file(returned as u64)
        && let Ok(inode) = kernel_pointer(file, task_offset(6))
    {
        let identity = inode_identity(inode);
        if let Some(path) = opening {
            watch_file(inode, identity, path);
        }
        watched_inode_opened(ctx, returned as u64, file, inode, identity, opening, asked.unwrap_or(0));
    }
    if opening.is_some() {
        let _ = OPENING.remove(&tid);
    }
}

/// Reports an open whose file is in `WATCHED_INODES`, unless the open was already reported under that name.
#[inline(always)]
fn watched_inode_opened(
    ctx: &TracePointContext,
    fd: u64,
    file: *const u8,
    inode: *const u8,
    identity: [u64; 2],
    reported_as: Option<*const [u8; PATH_LEN]>,
    asked_flags: u64,
) {
    let Some(name) = WATCHED_INODES.get_ptr(&identity) else { return };
    // SAFETY: both are live map values of PATH_LEN bytes.
    if let Some(reported) = reported_as
        && same_path(unsafe { &*reported }, unsafe { &*name })
    {
        return;
    }
    watch_file(inode, identity, name);
    emit_syscall(ctx, SYS_OPEN_WATCHED_INODE, 0, NO_PATHS, |event| {
        event.args[0] = fd;
        event.flags |= SYSCALL_NAMED_BY_KERNEL;
        // SAFETY: helper read of the open file's flags.
        event.args[2] = unsafe { bpf_probe_read_kernel(file.wrapping_add(task_offset(23)) as *const u32) }
            .map_or(0, u64::from)
            | (asked_flags & CREATE_OR_TRUNCATE);
        // SAFETY: the read helper copies the live map value into the record's path buffer of the same size.
        unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(name as *const u8, &mut event.path) }.is_ok()
    });
}

/// True when two NUL-terminated paths are equal.
#[inline(always)]
fn same_path(a: &[u8; PATH_LEN], b: &[u8; PATH_LEN]) -> bool {
    for index in 0..PATH_LEN {
        if a[index] != b[index] {
            return false;
        }
        if a[index] == 0 {
            return true;
        }
    }
    true
}

/// True when descriptor `fd` is a file opened from a watched path; its path is then copied to the record.
#[inline(always)]
fn watched_descriptor(event: &mut SyscallEvent, fd: u64) -> bool {
    let Some(inode) = descriptor_inode(fd) else { return false };
    let identity = inode_identity(inode as *const u8);
    // The path it was opened by; else, if the file is one of the listed ones (an entry evicted by other opens, a
    // descriptor opened before the collector started), its listed name.
    let name = match WATCHED_FILES.get_ptr(&inode) {
        // SAFETY: a live map value.
        Some(watched) if unsafe { (*watched).identity } == identity => unsafe { (*watched).path.as_ptr() },
        _ => match WATCHED_INODES.get_ptr(&identity) {
            Some(listed) => listed as *const u8,
            None => return false,
        },
    };
    event.flags |= SYSCALL_NAMED_BY_KERNEL;
    // SAFETY: the read helper copies a live map value's path into the record's buffer of the same size.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(name, &mut event.path) }.is_ok()
}

/// AT_EMPTY_PATH: an empty path means the descriptor itself.
const AT_EMPTY_PATH: u64 = 0x1000;

/// A `*at` syscall's target: its path when it has one (filtered as paths are), the descriptor's file when the path
/// is empty and AT_EMPTY_PATH is set (or the path pointer is NULL, as futimens passes it).
#[inline(always)]
fn path_or_descriptor(event: &mut SyscallEvent, path_argument: usize, flags_argument: usize) -> bool {
    let pointer = event.args[path_argument.min(5)];
    let length = read_user_path(pointer, &mut event.path);
    if length == 0 && (pointer == 0 || event.args[flags_argument.min(5)] & AT_EMPTY_PATH != 0) {
        let fd = event.args[0];
        return watched_descriptor(event, fd);
    }
    path_matches(&event.path, length)
}

/// O_CREAT and O_TRUNC: the kernel clears them from the open file's flags, so an open that only the inode match
/// reports (`: > /host/var/log/wtmp`) would lose them. Kept per thread from the entry, for opens that ask for them.
const CREATE_OR_TRUNCATE: u64 = 0o100 | 0o1000;
#[map]
static OPEN_FLAGS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn remember_open_flags(flags: u64) {
    if flags & CREATE_OR_TRUNCATE != 0 {
        let _ = OPEN_FLAGS.insert(&(bpf_get_current_pid_tgid() as u32), &flags, 0);
    }
}

macro_rules! open_syscall {
    ($program:ident, $syscall:expr, $arguments:expr, $path:expr, $ctx:ident => $flags:expr) => {
        #[tracepoint]
        pub fn $program($ctx: TracePointContext) -> u32 {
            remember_open_flags($flags);
            emit_syscall(&$ctx, $syscall, $arguments, Paths { first: Some($path), second: None }, opening);
            0
        }
    };
}

open_syscall!(sys_enter_openat, SYS_OPENAT, 4, 1, ctx => arg(&ctx, 2));
open_syscall!(sys_enter_open, SYS_OPEN, 3, 0, ctx => arg(&ctx, 1));
open_syscall!(sys_enter_creat, SYS_CREAT, 2, 0, ctx => CREATE_OR_TRUNCATE);

/// openat2 keeps its `struct open_how` (three u64s: flags, mode, resolve) in `extra`.
#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let how = arg(&ctx, 2);
    // SAFETY: user pointer read through the helper.
    let flags: u64 = if how == 0 { 0 } else { unsafe { bpf_probe_read_user(how as *const u64) }.unwrap_or(0) };
    remember_open_flags(flags);
    emit_syscall(&ctx, SYS_OPENAT2, 4, Paths { first: Some(1), second: None }, |event| {
        // SAFETY: user pointer read through the helper.
        if how != 0 {
            let _ = unsafe { aya_ebpf::helpers::bpf_probe_read_user_buf(how as *const u8, &mut event.extra[..24]) };
        }
        opening(event)
    });
    0
}
path_syscall!(sys_enter_chmod, SYS_CHMOD, 2, Some(0), None);
#[tracepoint]
pub fn sys_enter_fchmodat2(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_FCHMODAT2, 4, NO_PATHS, |event| path_or_descriptor(event, 1, 3));
    0
}
path_syscall!(sys_enter_chown, SYS_CHOWN, 3, Some(0), None);
path_syscall!(sys_enter_lchown, SYS_LCHOWN, 3, Some(0), None);

macro_rules! open_exit {
    ($program:ident) => {
        #[tracepoint]
        pub fn $program(ctx: TracePointContext) -> u32 {
            open_exit(&ctx);
            0
        }
    };
}

open_exit!(sys_exit_openat);
open_exit!(sys_exit_open);
open_exit!(sys_exit_creat);
open_exit!(sys_exit_openat2);

macro_rules! descriptor_syscall {
    ($program:ident, $syscall:expr, $arguments:expr) => {
        #[tracepoint]
        pub fn $program(ctx: TracePointContext) -> u32 {
            emit_syscall(&ctx, $syscall, $arguments, NO_PATHS, |event| {
                let fd = event.args[0];
                watched_descriptor(event, fd)
            });
            0
        }
    };
}

descriptor_syscall!(sys_enter_ftruncate, SYS_FTRUNCATE, 2);
descriptor_syscall!(sys_enter_fchmod, SYS_FCHMOD, 2);
descriptor_syscall!(sys_enter_fchown, SYS_FCHOWN, 3);
path_syscall!(sys_enter_unlinkat, SYS_UNLINKAT, 3, Some(1), None);
path_syscall!(sys_enter_unlink, SYS_UNLINK, 1, Some(0), None);
path_syscall!(sys_enter_renameat2, SYS_RENAMEAT2, 5, Some(1), Some(3));
path_syscall!(sys_enter_renameat, SYS_RENAMEAT, 4, Some(1), Some(3));
path_syscall!(sys_enter_rename, SYS_RENAME, 2, Some(0), Some(1));
path_syscall!(sys_enter_fchmodat, SYS_FCHMODAT, 3, Some(1), None);
#[tracepoint]
pub fn sys_enter_fchownat(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_FCHOWNAT, 5, NO_PATHS, |event| path_or_descriptor(event, 1, 4));
    0
}
path_syscall!(sys_enter_truncate, SYS_TRUNCATE, 2, Some(0), None);

/// utimensat also keeps the two timespecs it sets (atime, mtime) in `extra`. With no path (or an empty one and
/// AT_EMPTY_PATH) it is futimens(fd) — how `touch` and archive tools set times — reported when the descriptor's
/// file was opened from a watched path.
#[tracepoint]
pub fn sys_enter_utimensat(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_UTIMENSAT, 4, NO_PATHS, |event| {
        let keep = path_or_descriptor(event, 1, 3);
        let times = event.args[2];
        event.extra = [0; EXTRA_LEN];
        if keep && times != 0 {
            // SAFETY: user pointer read through the helper.
            let _ = unsafe { aya_ebpf::helpers::bpf_probe_read_user_buf(times as *const u8, &mut event.extra) };
        }
        keep
    });
    0
}

/// Only internet sockets: the sockaddr is kept in `extra`.
#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_CONNECT, 3, NO_PATHS, |event| {
        let address = event.args[1];
        if address == 0 {
            return false;
        }
        // SAFETY: user pointer read through the helper.
        if unsafe { aya_ebpf::helpers::bpf_probe_read_user_buf(address as *const u8, &mut event.extra[..28]) }.is_err()
        {
            return false;
        }
        let family = u16::from_ne_bytes([event.extra[0], event.extra[1]]);
        let internet = family == 2 || family == 10;
        if internet && CONNECTS.insert(&socket_key(event.header.tgid, event.args[0]), &event.extra, 0).is_ok() {
            if let Some(slot) = CONNECTORS.get_ptr_mut(event.header.tgid % CONNECTOR_SLOTS) {
                // SAFETY: an array slot; a single aligned store.
                unsafe { core::ptr::write_volatile(slot, event.header.tgid) };
            }
        }
        internet
    });
    0
}

/// True when this process is the last one to connect a socket in its `CONNECTORS` slot: only then can a send be
/// its first on a connection.
#[inline(always)]
fn recently_connected() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(slot) = CONNECTORS.get_ptr_mut(tgid % CONNECTOR_SLOTS) else { return false };
    // SAFETY: an array slot; a single aligned load.
    let last = unsafe { core::ptr::read_volatile(slot) };
    last == tgid
}

#[inline(always)]
fn socket_key(tgid: u32, fd: u64) -> u64 {
    (u64::from(tgid) << 32) | (fd & 0xFFFF_FFFF)
}

/// The first write or sendto on a socket this process connected: its first bytes (a SOCKS greeting, an HTTP
/// request line) and the destination.
#[inline(always)]
fn first_send(fd: u64, buffer: u64, length: u64) {
    if !recently_connected() {
        return;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = socket_key(tgid, fd);
    // An empty send (a zero-length write or first iovec) does not use up the capture.
    if buffer == 0 || length == 0 {
        return;
    }
    // SAFETY: the value is copied out; the entry is removed once the payload was read.
    let Some(sockaddr) = (unsafe { CONNECTS.get(&key) }).copied() else { return };
    if is_collector(tgid) {
        let _ = CONNECTS.remove(&key);
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<SendEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return;
    };
    // SAFETY: a reserved record of the right size, every field written below.
    let event = unsafe { &mut *entry.as_mut_ptr() };
    event.header = header(KIND_SEND);
    event.fd = fd as u32;
    event.sockaddr = sockaddr;
    event.payload = [0; PAYLOAD_HEAD_LEN];
    let wanted = if length < PAYLOAD_HEAD_LEN as u64 { length as u32 } else { PAYLOAD_HEAD_LEN as u32 };
    // SAFETY: user pointer read through the helper; at most PAYLOAD_HEAD_LEN bytes into a buffer that size.
    let read = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            event.payload.as_mut_ptr() as *mut c_void,
            wanted & (PAYLOAD_HEAD_LEN as u32 * 2 - 1),
            buffer as *const c_void,
        )
    };
    // A buffer that cannot be read (EFAULT, a page not faulted in) does not use up the capture.
    if read != 0 {
        entry.discard(BPF_RB_NO_WAKEUP as u64);
        return;
    }
    let _ = CONNECTS.remove(&key);
    event.length = wanted;
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}

/// sendmsg/sendmmsg: the first bytes are those of the first `iovec` of the (first) message; `struct msghdr` has
/// `msg_iov` at 16 on 64-bit kernels, and `struct mmsghdr` starts with a `msghdr`.
#[inline(always)]
fn first_message(fd: u64, message: u64) {
    if message == 0 {
        return;
    }
    // SAFETY: user pointers read through the helper, which fails instead of faulting.
    let iovec: u64 = unsafe { bpf_probe_read_user((message + 16) as *const u64) }.unwrap_or(0);
    if iovec == 0 {
        return;
    }
    let base: u64 = unsafe { bpf_probe_read_user(iovec as *const u64) }.unwrap_or(0);
    let length: u64 = unsafe { bpf_probe_read_user((iovec + 8) as *const u64) }.unwrap_or(0);
    first_send(fd, base, length);
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    if recently_connected() {
        first_message(arg(&ctx, 0), arg(&ctx, 1));
    }
    0
}

#[tracepoint]
pub fn sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    if recently_connected() {
        first_message(arg(&ctx, 0), arg(&ctx, 1));
    }
    0
}

#[tracepoint]
pub fn sys_enter_write(ctx: TracePointContext) -> u32 {
    first_send(arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2));
    0
}

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    first_send(arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2));
    0
}

/// bind(2) to an internet address is remembered until listen(2) reports it.
#[tracepoint]
pub fn sys_enter_bind(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let address = arg(&ctx, 1);
    if address == 0 || is_collector(tgid) {
        return 0;
    }
    let mut sockaddr = [0u8; EXTRA_LEN];
    // SAFETY: user pointer read through the helper.
    if unsafe { aya_ebpf::helpers::bpf_probe_read_user_buf(address as *const u8, &mut sockaddr[..28]) }.is_err() {
        return 0;
    }
    let family = u16::from_ne_bytes([sockaddr[0], sockaddr[1]]);
    if family == 2 || family == 10 {
        let _ = BOUND.insert(&socket_key(tgid, arg(&ctx, 0)), &sockaddr, 0);
    }
    0
}

#[tracepoint]
pub fn sys_enter_listen(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_LISTEN, 2, NO_PATHS, |event| {
        let key = socket_key(event.header.tgid, event.args[0]);
        // SAFETY: the value is copied out before the entry is removed.
        match unsafe { BOUND.get(&key) }.copied() {
            Some(sockaddr) => {
                event.extra = sockaddr;
                let _ = BOUND.remove(&key);
                true
            }
            None => false,
        }
    });
    0
}

#[inline(always)]
fn accept_enter(ctx: &TracePointContext) {
    let _ = ACCEPTS.insert(&(bpf_get_current_pid_tgid() as u32), &[arg(ctx, 0), arg(ctx, 1)], 0);
}

#[inline(always)]
fn accept_exit(ctx: &TracePointContext) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is copied out before the entry is removed.
    let Some([listening, peer]) = (unsafe { ACCEPTS.get(&tid) }).copied() else { return };
    let _ = ACCEPTS.remove(&tid);
    let returned = arg(ctx, 0) as i64;
    if returned < 0 || peer == 0 {
        return;
    }
    emit_syscall(ctx, SYS_ACCEPT, 0, NO_PATHS, |event| {
        event.args[0] = listening;
        event.args[1] = returned as u64;
        // SAFETY: user pointer read through the helper.
        if unsafe { aya_ebpf::helpers::bpf_probe_read_user_buf(peer as *const u8, &mut event.extra[..28]) }.is_err() {
            return false;
        }
        let family = u16::from_ne_bytes([event.extra[0], event.extra[1]]);
        family == 2 || family == 10
    });
}

#[tracepoint]
pub fn sys_enter_accept4(ctx: TracePointContext) -> u32 {
    accept_enter(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_accept(ctx: TracePointContext) -> u32 {
    accept_enter(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_unshare(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_UNSHARE, 1, NO_PATHS, |event| event.args[0] & CLONE_NEW_MASK != 0);
    0
}

#[tracepoint]
pub fn sys_enter_setns(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_SETNS, 2, NO_PATHS, |_| true);
    0
}

#[inline(always)]
fn remember_clone_flags(flags: u64) {
    let _ = CLONE_FLAGS.insert(&(bpf_get_current_pid_tgid() as u32), &flags, 0);
}

#[tracepoint]
pub fn sys_enter_clone(ctx: TracePointContext) -> u32 {
    remember_clone_flags(arg(&ctx, 0));
    emit_syscall(&ctx, SYS_CLONE, 1, NO_PATHS, |event| event.args[0] & CLONE_NEW_MASK != 0);
    0
}

/// fork() is clone(SIGCHLD); vfork() is clone(CLONE_VFORK | CLONE_VM | SIGCHLD).
#[tracepoint]
pub fn sys_enter_fork(_ctx: TracePointContext) -> u32 {
    remember_clone_flags(17);
    0
}

#[tracepoint]
pub fn sys_enter_vfork(_ctx: TracePointContext) -> u32 {
    remember_clone_flags(0x4000 | 0x100 | 17);
    0
}

/// clone3 takes a `struct clone_args` whose first field is the flags.
#[tracepoint]
pub fn sys_enter_clone3(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_CLONE3, 2, NO_PATHS, |event| {
        // SAFETY: user pointer read through the helper.
        let flags: u64 = unsafe { bpf_probe_read_user(event.args[0] as *const u64) }.unwrap_or(0);
        event.args[2] = flags;
        remember_clone_flags(flags);
        flags & CLONE_NEW_MASK != 0
    });
    0
}

/// Signal 0 only probes whether a process exists; it is not reported. Signals are `int`s: the kernel ignores the
/// upper half of the register, so the filters do too.
#[tracepoint]
pub fn sys_enter_kill(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_KILL, 2, NO_PATHS, |event| event.args[1] as u32 != 0);
    0
}

#[tracepoint]
pub fn sys_enter_tkill(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_TKILL, 2, NO_PATHS, |event| event.args[1] as u32 != 0);
    0
}

#[tracepoint]
pub fn sys_enter_tgkill(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_TGKILL, 3, NO_PATHS, |event| event.args[2] as u32 != 0);
    0
}

/// The `struct pid` a pidfd refers to: the inode's `i_private` on pidfs (6.9 and later), the file's
/// `private_data` on the anonymous inode of earlier kernels.
#[inline(always)]
fn pidfd_pid(fd: u64) -> Option<*const u8> {
    let file = descriptor_file(fd)?;
    let on_pidfs = kernel_pointer(file, task_offset(6)).and_then(|inode| kernel_pointer(inode, task_offset(17)));
    on_pidfs.or_else(|_| kernel_pointer(file, task_offset(16))).ok()
}

/// pidfd_send_signal(pidfd, sig, info, flags): a signal sent through a process descriptor. The target's pid (in
/// the initial namespace) is read here, from the descriptor's `struct pid`, into `args[4]` (0 when unreadable):
/// the sender may be gone before the collector could look at its descriptors.
#[tracepoint]
pub fn sys_enter_pidfd_send_signal(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_PIDFD_SEND_SIGNAL, 4, NO_PATHS, |event| {
        event.args[4] = pidfd_pid(event.args[0])
            // SAFETY: helper read of `numbers[0].nr` inside the `struct pid`.
            .and_then(|pid| unsafe {
                bpf_probe_read_kernel(pid.wrapping_add(task_offset(18) + task_offset(19)) as *const i32).ok()
            })
            .map_or(0, |nr| nr as u64);
        event.args[1] as u32 != 0
    });
    0
}

macro_rules! id_syscall {
    ($program:ident, $syscall:expr, $arguments:expr) => {
        #[tracepoint]
        pub fn $program(ctx: TracePointContext) -> u32 {
            emit_syscall(&ctx, $syscall, $arguments, NO_PATHS, |_| true);
            0
        }
    };
}

id_syscall!(sys_enter_setuid, SYS_SETUID, 1);
id_syscall!(sys_enter_setgid, SYS_SETGID, 1);
id_syscall!(sys_enter_setreuid, SYS_SETREUID, 2);
id_syscall!(sys_enter_setregid, SYS_SETREGID, 2);
id_syscall!(sys_enter_setresuid, SYS_SETRESUID, 3);
id_syscall!(sys_enter_setresgid, SYS_SETRESGID, 3);

#[tracepoint]
pub fn sys_enter_capset(ctx: TracePointContext) -> u32 {
    emit_syscall(&ctx, SYS_CAPSET, 2, NO_PATHS, |event| {
        let data = event.args[1];
        event.extra = [0; EXTRA_LEN];
        // SAFETY: user pointer read through the helper; two 12-byte structs.
        data != 0
            && unsafe { aya_ebpf::helpers::bpf_probe_read_user_buf(data as *const u8, &mut event.extra[..24]) }.is_ok()
    });
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
