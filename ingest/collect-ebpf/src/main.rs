//! Palisade's kernel programs. Tracepoints only (fentry, LSM and kprobes are unavailable on the target
//! kernels): execve entry captures argv from user memory, `sched_process_exec` emits the exec with the resolved
//! filename, fork and exit keep the collector's process table. Records go to one ring buffer without wakeups;
//! the collector polls it. The collector's own process is excluded here, in the kernel.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::EbpfContext;
use aya_ebpf::bindings::BPF_RB_NO_WAKEUP;
use aya_ebpf::helpers::generated::{bpf_get_current_cgroup_id, bpf_ktime_get_ns, bpf_probe_read_user_str};
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_probe_read_kernel_buf,
    bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
};
use aya_ebpf::macros::{map, tracepoint};
use aya_ebpf::maps::{HashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::TracePointContext;
use palisade_collect_common::{
    ARGV_LIMIT, COUNTER_PENDING_INSERT_FAILURES, COUNTER_RINGBUF_DROPS, COUNTER_SLOTS, EventHeader, ExecEvent,
    ExitEvent, FLAG_ARGV_MISSING, FLAG_ARGV_TRUNCATED, ForkEvent, KIND_EXEC, KIND_EXIT, KIND_FORK, MAX_ARGS,
    PendingExec,
};

/// Thread group id of the collector; its own activity is not reported. Set by the loader.
#[unsafe(no_mangle)]
static COLLECTOR_TGID: u32 = 0;
/// Offsets of `child_pid` and of `filename`'s `__data_loc` in the tracepoint records; they differ between kernel
/// versions, so the loader reads them from tracefs `format` files.
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: u32 = 20;
#[unsafe(no_mangle)]
static EXEC_FILENAME_OFFSET: u32 = 8;
#[unsafe(no_mangle)]
static EXEC_OLD_PID_OFFSET: u32 = 16;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);
#[map]
static PENDING: HashMap<u32, PendingExec> = HashMap::with_max_entries(4096, 0);
#[map]
static SCRATCH: PerCpuArray<PendingExec> = PerCpuArray::with_max_entries(1, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

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
    tgid == global(&COLLECTOR_TGID)
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
        reserved: 0,
        // SAFETY: helpers without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

fn capture_argv(ctx: &TracePointContext, argv_offset: usize) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if is_collector((pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let tid = pid_tgid as u32;
    // SAFETY: reading the tracepoint record at an offset from its format.
    let argv: *const *const u8 = unsafe { ctx.read_at(argv_offset) }.map_err(i64::from)?;
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(0i64)?;
    // SAFETY: the per-CPU scratch slot belongs to this program invocation.
    let scratch = unsafe { &mut *scratch };
    scratch.flags = 0;
    let mut offset: usize = 0;
    for index in 0..MAX_ARGS {
        // SAFETY: user pointer read through the helper, which fails instead of faulting.
        let arg: *const u8 = match unsafe { bpf_probe_read_user(argv.add(index)) } {
            Ok(arg) => arg,
            Err(_) => break,
        };
        if arg.is_null() {
            break;
        }
        if offset >= ARGV_LIMIT || index == MAX_ARGS - 1 {
            scratch.flags |= FLAG_ARGV_TRUNCATED;
            break;
        }
        // SAFETY: offset < ARGV_LIMIT and the read is at most ARGV_LIMIT bytes into a 2 * ARGV_LIMIT buffer.
        let read = unsafe {
            let destination = scratch.argv.as_mut_ptr().add(offset & (ARGV_LIMIT - 1));
            bpf_probe_read_user_str(destination as *mut c_void, ARGV_LIMIT as u32, arg as *const c_void)
        };
        if read <= 0 {
            break;
        }
        offset += read as usize;
    }
    if offset > ARGV_LIMIT {
        offset = ARGV_LIMIT;
        scratch.flags |= FLAG_ARGV_TRUNCATED;
    }
    scratch.argv_len = offset as u32;
    if PENDING.insert(&tid, scratch, 0).is_err() {
        count(COUNTER_PENDING_INSERT_FAILURES);
    }
    Ok(())
}

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let _ = capture_argv(&ctx, 24);
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let _ = capture_argv(&ctx, 32);
    0
}

/// A failed execve leaves its capture behind; a successful one was consumed by `sched_process_exec`.
#[tracepoint]
pub fn sys_exit_execve(_ctx: TracePointContext) -> u32 {
    let _ = PENDING.remove(&(bpf_get_current_pid_tgid() as u32));
    0
}

#[tracepoint]
pub fn sys_exit_execveat(_ctx: TracePointContext) -> u32 {
    let _ = PENDING.remove(&(bpf_get_current_pid_tgid() as u32));
    0
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
    // The capture is keyed by the thread that called execve, which de_thread may have renamed.
    // SAFETY: tracepoint record reads at offsets from its format.
    let old_pid: i32 = unsafe { ctx.read_at(global(&EXEC_OLD_PID_OFFSET) as usize) }.map_err(i64::from)?;
    let data_loc: u32 = unsafe { ctx.read_at(global(&EXEC_FILENAME_OFFSET) as usize) }.map_err(i64::from)?;
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count(COUNTER_RINGBUF_DROPS);
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved ring-buffer record of the right size; every field read by userspace
    // is written below (argv only up to argv_len, which is set last).
    unsafe {
        (*event).header = header;
        (*event).argv_len = 0;
        (*event).flags = FLAG_ARGV_MISSING;
        let filename = (ctx.as_ptr() as *const u8).add((data_loc & 0xFFFF) as usize);
        if bpf_probe_read_kernel_str_bytes(filename, &mut (*event).filename).is_err() {
            (*event).filename[0] = 0;
        }
        let key = old_pid as u32;
        if let Some(pending) = PENDING.get_ptr(&key) {
            if bpf_probe_read_kernel_buf((*pending).argv.as_ptr(), &mut (*event).argv).is_ok() {
                (*event).argv_len = (*pending).argv_len;
                (*event).flags = (*pending).flags;
            }
            let _ = PENDING.remove(&key);
        }
    }
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    Ok(())
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let header = header(KIND_FORK);
    if is_collector(header.tgid) {
        return 0;
    }
    // SAFETY: tracepoint record read at the offset from its format.
    let Ok(child_pid) = (unsafe { ctx.read_at::<i32>(global(&FORK_CHILD_PID_OFFSET) as usize) }) else {
        return 0;
    };
    let event = ForkEvent { header, child_pid: child_pid as u32, reserved: 0 };
    if EVENTS.output::<ForkEvent>(&event, BPF_RB_NO_WAKEUP as u64).is_err() {
        count(COUNTER_RINGBUF_DROPS);
    }
    0
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let header = header(KIND_EXIT);
    // Threads exit too; only the thread-group leader's exit ends the process.
    if header.pid != header.tgid || is_collector(header.tgid) {
        return 0;
    }
    if EVENTS.output::<ExitEvent>(&ExitEvent { header }, BPF_RB_NO_WAKEUP as u64).is_err() {
        count(COUNTER_RINGBUF_DROPS);
    }
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
