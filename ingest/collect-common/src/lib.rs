//! The records the eBPF programs write to the ring buffer, shared with the collector. `#[repr(C)]`, no implicit
//! padding (checked by the size asserts), every record starting with an `EventHeader` whose `kind` says which
//! record follows.
#![no_std]

/// Bytes of argv the kernel side keeps (arguments NUL-separated, as the new image's `mm->arg_start..arg_end`
/// holds them). Longer command lines are cut and flagged. A power of two: the read length is masked with
/// `ARGV_LIMIT * 2 - 1` so the verifier sees it bounded.
pub const ARGV_LIMIT: usize = 2048;
pub const FILENAME_LEN: usize = 256;
pub const COMM_LEN: usize = 16;

pub const KIND_EXEC: u32 = 1;
pub const KIND_FORK: u32 = 2;
pub const KIND_EXIT: u32 = 3;
pub const KIND_SYSCALL: u32 = 4;

/// `SyscallEvent::syscall`: which syscall entry the record comes from.
pub const SYS_CONNECT: u32 = 1;
pub const SYS_UNSHARE: u32 = 2;
pub const SYS_SETNS: u32 = 3;
pub const SYS_CLONE: u32 = 4;
pub const SYS_CLONE3: u32 = 5;
pub const SYS_KILL: u32 = 6;
pub const SYS_TKILL: u32 = 7;
pub const SYS_TGKILL: u32 = 8;
pub const SYS_SETUID: u32 = 9;
pub const SYS_SETGID: u32 = 10;
pub const SYS_SETREUID: u32 = 11;
pub const SYS_SETREGID: u32 = 12;
pub const SYS_SETRESUID: u32 = 13;
pub const SYS_SETRESGID: u32 = 14;
pub const SYS_OPENAT: u32 = 15;
pub const SYS_UNLINKAT: u32 = 16;
pub const SYS_RENAMEAT2: u32 = 17;
pub const SYS_UTIMENSAT: u32 = 18;
pub const SYS_FCHMODAT: u32 = 19;
pub const SYS_FCHOWNAT: u32 = 20;
pub const SYS_TRUNCATE: u32 = 21;
pub const SYS_UNLINK: u32 = 22;
pub const SYS_RENAME: u32 = 23;
pub const SYS_RENAMEAT: u32 = 24;
/// listen(2) on a socket bound to an internet address: `extra` holds the bound sockaddr.
pub const SYS_LISTEN: u32 = 25;
/// accept(2)/accept4(2) returned: `extra` holds the peer sockaddr, `args[0]` the listening fd, `args[1]` the new fd.
pub const SYS_ACCEPT: u32 = 26;
/// capset(2): `extra` holds the first two `__user_cap_data_struct`s (effective, permitted, inheritable; low and
/// high 32 bits).
pub const SYS_CAPSET: u32 = 27;
/// The open family besides openat: musl (Alpine, busybox, static tools) opens with open(2); creat(2) is
/// open(O_CREAT | O_WRONLY | O_TRUNC); openat2(2) keeps its `struct open_how` (flags, mode, resolve) in `extra`.
pub const SYS_OPEN: u32 = 28;
pub const SYS_CREAT: u32 = 29;
pub const SYS_OPENAT2: u32 = 30;
pub const SYS_CHMOD: u32 = 31;
pub const SYS_FCHMODAT2: u32 = 32;
pub const SYS_CHOWN: u32 = 33;
pub const SYS_LCHOWN: u32 = 34;
/// Descriptor forms, reported when the descriptor's file was opened from a watched path (under any descriptor
/// number, in any process: the kernel keys the file by its inode); `path` is the path it was opened by.
pub const SYS_FTRUNCATE: u32 = 35;
pub const SYS_FCHMOD: u32 = 36;
pub const SYS_FCHOWN: u32 = 37;
/// pidfd_send_signal(2): `args[4]` is the target's pid, read in the kernel from the pidfd.
pub const SYS_PIDFD_SEND_SIGNAL: u32 = 38;
/// An open whose path did not pass the filters returned a descriptor of a watched file (by device and inode:
/// through a symlink, a hard link, a relative path, `/proc/<pid>/root`, a bind mount of the host's root):
/// `path` is the file's name from `WATCHED_INODES`, `args[2]` the open file's flags.
pub const SYS_OPEN_WATCHED_INODE: u32 = 39;
/// Files the collector watches by device and inode (`WATCHED_INODES`).
pub const MAX_WATCHED_INODES: u32 = 4096;

/// CLONE_THREAD: the new task is a thread of the same process.
pub const CLONE_THREAD: u64 = 0x0001_0000;
/// Bytes of the first payload kept from a new outbound connection.
pub const PAYLOAD_HEAD_LEN: usize = 64;

/// Flags of clone/unshare that create namespaces (CLONE_NEWNS .. CLONE_NEWNET, CLONE_NEWTIME).
pub const CLONE_NEW_MASK: u64 = 0x7E02_0080;

pub const PATH_LEN: usize = 256;
pub const EXTRA_LEN: usize = 32;
/// Path filters the kernel applies to file syscalls (a path, or the second path of a rename, must start with one
/// of the prefixes or end with one of the suffixes). Kept in two LPM tries: prefixes as written, suffixes
/// reversed, so one lookup each decides (no loops for the verifier to walk).
pub const MAX_PATH_FILTERS: u32 = 64;
pub const PATH_FILTER_LEN: usize = 64;

/// `ExecEvent::flags`: argv was longer than the configured limit and was cut there.
pub const FLAG_ARGV_TRUNCATED: u32 = 1;
/// `ExecEvent::flags`: the new image's argument area could not be read in the kernel; argv is empty (the collector
/// reads `/proc/<pid>/cmdline` instead).
pub const FLAG_ARGV_MISSING: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    pub kind: u32,
    /// Thread id of the task the event is about.
    pub pid: u32,
    /// Process id (thread group).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// On syscall and exit records: how many of this process's file events were folded as repeats since its
    /// previous record (see `REPEAT_LIMIT`); 0 on the others.
    pub folded: u32,
    pub cgroup_id: u64,
    /// `bpf_ktime_get_ns`: CLOCK_MONOTONIC.
    pub ktime_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// Bytes of the controlling terminal's name kept (`tty_struct.name`, e.g. `pts3`).
pub const TTY_NAME_LEN: usize = 64;
/// Slots of the loader-filled `TASK_OFFSETS` global, in this order: `task_struct.cred`, `cred.euid`,
/// `cred.cap_effective`, `task_struct.files`, `files_struct.fdt`, `fdtable.fd`, `file.f_inode`, `inode.i_mode`,
/// `inode.i_rdev`, `task_struct.signal`, `signal_struct.tty`, `tty_struct.name`, `task_struct.mm`,
/// `mm_struct.arg_start`, `mm_struct.arg_end`, `task_struct.exit_code`, `file.private_data`, `inode.i_private`,
/// `pid.numbers`, `upid.nr`, `inode.i_ino`, `inode.i_sb`, `super_block.s_dev`, `file.f_flags`, `fdtable.max_fds`
/// (byte offsets from BTF).
pub const TASK_OFFSET_SLOTS: usize = 25;

/// `TaskInfo::read`: which parts the exec program could read from the task.
pub const TASK_READ_CRED: u32 = 1;
pub const TASK_READ_FILES: u32 = 2;
pub const TASK_READ_TTY: u32 = 4;

/// What the exec program reads of the new image's task: effective uid and capabilities, the files behind
/// descriptors 0-2 (inode mode, device and number; mode 0 with `stdio_open` clear means the descriptor is closed), and
/// the controlling terminal.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TaskInfo {
    pub read: u32,
    pub euid: u32,
    pub cap_effective: u64,
    /// The inode numbers behind descriptors 0-2: a pipe's names its two ends, so a reader finds its writer.
    pub stdio_ino: [u64; 3],
    pub stdio_rdev: [u32; 3],
    pub stdio_mode: [u16; 3],
    /// Bit n set: descriptor n is open.
    pub stdio_open: u16,
    pub tty: [u8; TTY_NAME_LEN],
    pub reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub argv_len: u32,
    pub flags: u32,
    pub task: TaskInfo,
    pub filename: [u8; FILENAME_LEN],
    pub argv: [u8; ARGV_LIMIT],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child_pid: u32,
    /// 1 when `clone_flags` was captured at the clone/fork syscall entry.
    pub has_flags: u32,
    pub clone_flags: u64,
}

/// The first bytes sent on a connection this process opened with connect(2).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SendEvent {
    pub header: EventHeader,
    pub fd: u32,
    pub length: u32,
    pub sockaddr: [u8; EXTRA_LEN],
    pub payload: [u8; PAYLOAD_HEAD_LEN],
}

pub const KIND_SEND: u32 = 5;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// The exit status (0-255), when the process exited by itself (not killed by a signal).
    pub exit_code: i32,
    pub has_exit_code: u32,
}

/// One syscall entry: up to six raw arguments, up to two paths read from user memory, and 32 extra bytes
/// (the sockaddr of connect, the timespecs of utimensat).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallEvent {
    pub header: EventHeader,
    pub syscall: u32,
    /// `SYSCALL_NAMED_BY_KERNEL`, or 0.
    pub flags: u32,
    pub args: [u64; 6],
    pub path: [u8; PATH_LEN],
    pub path2: [u8; PATH_LEN],
    pub extra: [u8; EXTRA_LEN],
}

/// `SyscallEvent::flags`: `path` is the name the kernel keeps for the file (the descriptor forms, the inode match),
/// not a path the caller passed: it is not relative to the caller's directory.
pub const SYSCALL_NAMED_BY_KERNEL: u32 = 1;

pub const KIND_CGROUP: u32 = 6;
/// Bytes of a cgroup's path kept: kind and k3d nodes (a node in a container) nest pods' cgroups past 300 bytes.
pub const CGROUP_PATH_LEN: usize = 1024;

/// A cgroup v2 directory created or removed (`cgroup:cgroup_mkdir`, `cgroup_rmdir` on the default hierarchy): its
/// id (what events carry as `cgroup_id`), the length of its path including the NUL, and, for a creation, the
/// path's first `CGROUP_PATH_LEN - 1` bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CgroupEvent {
    pub header: EventHeader,
    pub id: u64,
    pub length: u32,
    /// 1: removed (no path).
    pub removed: u32,
    pub path: [u8; CGROUP_PATH_LEN],
}

/// Which per-CPU counter of `COUNTERS` counts what.
pub const COUNTER_RINGBUF_DROPS: u32 = 0;
/// Exec events whose argument area could not be read in the kernel (the collector falls back to `/proc`).
pub const COUNTER_ARGV_READ_FAILURES: u32 = 1;
/// File events folded in the kernel as repeats (see `REPEAT_LIMIT` on the kernel side).
pub const COUNTER_FOLDED_REPEATS: u32 = 2;
/// File syscalls whose path could not be read from the caller's memory (not filtered, so not reported).
pub const COUNTER_PATH_UNREADABLE: u32 = 3;
pub const COUNTER_SLOTS: u32 = 4;

const _: () = assert!(core::mem::size_of::<EventHeader>() == 56);
const _: () = assert!(core::mem::size_of::<TaskInfo>() == 16 + 24 + 12 + 8 + TTY_NAME_LEN + 4);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 56 + 8 + 128 + FILENAME_LEN + ARGV_LIMIT);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 72);
const _: () = assert!(core::mem::size_of::<SendEvent>() == 56 + 8 + EXTRA_LEN + PAYLOAD_HEAD_LEN);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 64);
const _: () = assert!(core::mem::size_of::<SyscallEvent>() == 56 + 8 + 48 + 2 * PATH_LEN + EXTRA_LEN);
const _: () = assert!(core::mem::size_of::<CgroupEvent>() == 56 + 16 + CGROUP_PATH_LEN);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data records with no padding (see the size asserts) and no pointers.
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::ExecEvent {}
    unsafe impl aya::Pod for super::ForkEvent {}
    unsafe impl aya::Pod for super::ExitEvent {}
    unsafe impl aya::Pod for super::SyscallEvent {}
    unsafe impl aya::Pod for super::SendEvent {}
    unsafe impl aya::Pod for super::CgroupEvent {}
}
