//! Loads and attaches the embedded eBPF object. Checks what it needs first and says clearly what is missing:
//! root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN), kernel BTF, tracefs (mounted here when absent).

use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use palisade_collect_common::{MAX_PATH_FILTERS, PATH_FILTER_LEN};

use crate::collector::CollectError;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/palisade-collect-ebpf"));

const TRACEFS: &str = "/sys/kernel/tracing";

/// (program, tracepoint category, tracepoint name, required). Optional ones may be absent on other
/// architectures (x86_64 has `open`, `creat`, `chmod`, `chown`, `rename` and `unlink`, arm64 only the `*at` forms)
/// or on older kernels (`openat2` from 5.6, `pidfd_send_signal` from 5.1, `fchmodat2` from 6.6).
const PROGRAMS: &[(&str, &str, &str, bool)] = &[
    ("sys_enter_capset", "syscalls", "sys_enter_capset", true),
    ("sys_enter_fork", "syscalls", "sys_enter_fork", false),
    ("sys_enter_vfork", "syscalls", "sys_enter_vfork", false),
    ("sys_enter_write", "syscalls", "sys_enter_write", true),
    ("sys_enter_sendto", "syscalls", "sys_enter_sendto", true),
    ("sys_enter_bind", "syscalls", "sys_enter_bind", true),
    ("sys_enter_listen", "syscalls", "sys_enter_listen", true),
    ("sys_enter_accept4", "syscalls", "sys_enter_accept4", true),
    ("sys_enter_accept", "syscalls", "sys_enter_accept", false),
    ("sys_exit_accept4", "syscalls", "sys_exit_accept4", true),
    ("sys_exit_accept", "syscalls", "sys_exit_accept", false),
    ("sched_process_exec", "sched", "sched_process_exec", true),
    ("cgroup_mkdir", "cgroup", "cgroup_mkdir", false),
    ("cgroup_rmdir", "cgroup", "cgroup_rmdir", false),
    ("sched_process_fork", "sched", "sched_process_fork", true),
    ("sched_process_exit", "sched", "sched_process_exit", true),
    ("sys_enter_openat", "syscalls", "sys_enter_openat", true),
    ("sys_exit_openat", "syscalls", "sys_exit_openat", true),
    ("sys_enter_open", "syscalls", "sys_enter_open", false),
    ("sys_exit_open", "syscalls", "sys_exit_open", false),
    ("sys_enter_creat", "syscalls", "sys_enter_creat", false),
    ("sys_exit_creat", "syscalls", "sys_exit_creat", false),
    ("sys_enter_openat2", "syscalls", "sys_enter_openat2", false),
    ("sys_exit_openat2", "syscalls", "sys_exit_openat2", false),
    ("sys_enter_ftruncate", "syscalls", "sys_enter_ftruncate", true),
    ("sys_enter_chmod", "syscalls", "sys_enter_chmod", false),
    ("sys_enter_fchmod", "syscalls", "sys_enter_fchmod", true),
    ("sys_enter_fchmodat2", "syscalls", "sys_enter_fchmodat2", false),
    ("sys_enter_chown", "syscalls", "sys_enter_chown", false),
    ("sys_enter_lchown", "syscalls", "sys_enter_lchown", false),
    ("sys_enter_fchown", "syscalls", "sys_enter_fchown", true),
    ("sys_enter_sendmsg", "syscalls", "sys_enter_sendmsg", true),
    ("sys_enter_sendmmsg", "syscalls", "sys_enter_sendmmsg", true),
    ("sys_enter_pidfd_send_signal", "syscalls", "sys_enter_pidfd_send_signal", false),
    ("sys_enter_unlinkat", "syscalls", "sys_enter_unlinkat", true),
    ("sys_enter_unlink", "syscalls", "sys_enter_unlink", false),
    ("sys_enter_renameat2", "syscalls", "sys_enter_renameat2", true),
    ("sys_enter_renameat", "syscalls", "sys_enter_renameat", false),
    ("sys_enter_rename", "syscalls", "sys_enter_rename", false),
    ("sys_enter_fchmodat", "syscalls", "sys_enter_fchmodat", true),
    ("sys_enter_fchownat", "syscalls", "sys_enter_fchownat", true),
    ("sys_enter_truncate", "syscalls", "sys_enter_truncate", true),
    ("sys_enter_utimensat", "syscalls", "sys_enter_utimensat", true),
    ("sys_enter_connect", "syscalls", "sys_enter_connect", true),
    ("sys_enter_unshare", "syscalls", "sys_enter_unshare", true),
    ("sys_enter_setns", "syscalls", "sys_enter_setns", true),
    ("sys_enter_clone", "syscalls", "sys_enter_clone", true),
    ("sys_enter_clone3", "syscalls", "sys_enter_clone3", false),
    ("sys_enter_kill", "syscalls", "sys_enter_kill", true),
    ("sys_enter_tkill", "syscalls", "sys_enter_tkill", true),
    ("sys_enter_tgkill", "syscalls", "sys_enter_tgkill", true),
    ("sys_enter_setuid", "syscalls", "sys_enter_setuid", true),
    ("sys_enter_setgid", "syscalls", "sys_enter_setgid", true),
    ("sys_enter_setreuid", "syscalls", "sys_enter_setreuid", true),
    ("sys_enter_setregid", "syscalls", "sys_enter_setregid", true),
    ("sys_enter_setresuid", "syscalls", "sys_enter_setresuid", true),
    ("sys_enter_setresgid", "syscalls", "sys_enter_setresgid", true),
];

pub struct Loaded {
    /// Keeps the programs attached while alive.
    pub ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    /// The watched files by device and inode, filled at load; the collector takes it to refresh it.
    pub watched_inodes: Option<WatchedInodes>,
}

pub type WatchedInodes =
    aya::maps::HashMap<MapData, crate::watched_files::InodeKey, [u8; palisade_collect_common::PATH_LEN]>;

/// Why eBPF collection cannot run here, if it cannot; `None` when the prerequisites are met.
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("eBPF collection needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN); run as root".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some(
            "kernel BTF missing (/sys/kernel/btf/vmlinux); a kernel with CONFIG_DEBUG_INFO_BTF=y is needed".into(),
        );
    }
    None
}

fn ensure_tracefs() -> Result<(), CollectError> {
    if Path::new(TRACEFS).join("events").exists() {
        return Ok(());
    }
    let target = std::ffi::CString::new(TRACEFS).expect("static path");
    let fstype = std::ffi::CString::new("tracefs").expect("static");
    // SAFETY: plain mount(2) call with valid C strings.
    let rc = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(CollectError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Offset of `field` in a tracepoint's record, from its tracefs `format` file.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let declaration = line.trim().strip_prefix("field:")?;
        let (declaration, rest) = declaration.split_once(';')?;
        let name = declaration.rsplit([' ', '*']).next()?.split('[').next()?;
        if name != field {
            return None;
        }
        rest.split(';').find_map(|part| part.trim().strip_prefix("offset:")?.parse().ok())
    })
}

/// Offset and size of `field` in a tracepoint's record, from its tracefs `format` file.
pub fn field_layout(format: &str, field: &str) -> Option<(u32, u32)> {
    format.lines().find_map(|line| {
        let offset = field_offset(line, field)?;
        let size = line.split(';').find_map(|part| part.trim().strip_prefix("size:")?.parse().ok())?;
        Some((offset, size))
    })
}

/// The offsets of `root`, `id` and `path` in the cgroup event class's records (`cgroup_mkdir`, `cgroup_rmdir`), if
/// they are as the programs read them: a 4-byte root, an 8-byte id (kernel 5.5 on), a 4-byte `__data_loc` path.
fn cgroup_record_layout() -> Result<[u32; 3], String> {
    let path = format!("{TRACEFS}/events/cgroup/cgroup_mkdir/format");
    let format = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut offsets = [0; 3];
    for (slot, (field, size)) in [("root", 4), ("id", 8), ("path", 4)].into_iter().enumerate() {
        match field_layout(&format, field) {
            Some((offset, found)) if found == size => offsets[slot] = offset,
            Some((_, found)) => return Err(format!("{path}: `{field}` is {found} bytes, not {size}")),
            None => return Err(format!("{path}: no field `{field}`")),
        }
    }
    Ok(offsets)
}

fn offset_of(category: &str, event: &str, field: &str) -> Result<u32, CollectError> {
    let path = format!("{TRACEFS}/events/{category}/{event}/format");
    let format = std::fs::read_to_string(&path)
        .map_err(|e| CollectError::Format { path: path.clone(), reason: e.to_string() })?;
    field_offset(&format, field).ok_or_else(|| CollectError::Format { path, reason: format!("no field `{field}`") })
}

/// Path filters for the file syscalls: (prefixes, suffixes).
pub struct PathFilters<'a> {
    pub prefixes: &'a [String],
    pub suffixes: &'a [String],
}

/// Checks the filters fit the kernel table; pure, so configuration validation can call it.
pub fn check_path_filters(filters: &PathFilters<'_>) -> Result<(), String> {
    for (what, list) in [("prefixes", filters.prefixes), ("suffixes", filters.suffixes)] {
        if list.len() > MAX_PATH_FILTERS as usize {
            return Err(format!("{} path {what}; the kernel table holds {MAX_PATH_FILTERS}", list.len()));
        }
    }
    for entry in filters.prefixes.iter().chain(filters.suffixes) {
        if entry.is_empty() || entry.len() > PATH_FILTER_LEN {
            return Err(format!("path filter `{entry}` must be 1 to {PATH_FILTER_LEN} bytes"));
        }
    }
    Ok(())
}

fn install_path_filters(ebpf: &mut Ebpf, filters: &PathFilters<'_>) -> Result<(), CollectError> {
    check_path_filters(filters).map_err(CollectError::Load)?;
    for (map, entries, reverse) in
        [("PATH_PREFIXES", filters.prefixes, false), ("PATH_SUFFIXES", filters.suffixes, true)]
    {
        let mut trie: LpmTrie<_, [u8; PATH_FILTER_LEN], u8> =
            LpmTrie::try_from(ebpf.map_mut(map).ok_or_else(|| CollectError::Load(format!("map {map} missing")))?)
                .map_err(|e| CollectError::Load(e.to_string()))?;
        for text in entries {
            let mut data = [0u8; PATH_FILTER_LEN];
            let bytes: Vec<u8> = if reverse { text.bytes().rev().collect() } else { text.bytes().collect() };
            data[..bytes.len()].copy_from_slice(&bytes);
            trie.insert(&Key::new((bytes.len() * 8) as u32, data), 1, 0)
                .map_err(|e| CollectError::Load(format!("path filter `{text}`: {e}")))?;
        }
    }
    Ok(())
}

/// A random seed for the kernel's repeat hash (so a colliding path cannot be searched for offline).
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut random, &mut bytes);
    }
    // Mixed with the clock in case /dev/urandom could not be read.
    u64::from_ne_bytes(bytes)
        ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// What the kernel side is told at load time besides the tracepoint offsets.
pub struct LoadOptions<'a> {
    pub collector_tgid: u32,
    pub path_filters: PathFilters<'a>,
    pub argv_max_bytes: u32,
    /// Exclude the collector's child processes (and theirs), not only the collector.
    pub exclude_descendants: bool,
    /// Identical file events per process per second before the kernel folds them (0: never).
    pub repeat_limit: u32,
}

pub fn load(options: &LoadOptions<'_>) -> Result<Loaded, CollectError> {
    if let Some(reason) = unavailable_reason() {
        return Err(CollectError::Unavailable(reason));
    }
    let btf = crate::btf::Btf::from_kernel().map_err(CollectError::Unavailable)?;
    let task_offsets = crate::btf::task_offsets(&btf)
        .map_err(|e| CollectError::Load(format!("kernel BTF lacks a member the exec program reads: {e}")))?;
    ensure_tracefs()?;
    let fork_child = offset_of("sched", "sched_process_fork", "child_pid")?;
    let exec_filename = offset_of("sched", "sched_process_exec", "filename")?;
    // Absent or laid out otherwise: the cgroup programs are not attached (attribution then looks cgroups up by id,
    // while they exist).
    let cgroup_layout = cgroup_record_layout();
    if let Err(reason) = &cgroup_layout {
        tracing::info!(%reason, "cgroup creations not followed; containers are attributed while their cgroup exists");
    }
    let [mkdir_root, mkdir_id, mkdir_path] = cgroup_layout.clone().unwrap_or([8, 16, 24]);
    let mut ebpf = EbpfLoader::new()
        .override_global("COLLECTOR_TGID", &options.collector_tgid, true)
        .override_global("TASK_OFFSETS", &task_offsets, true)
        .override_global("EXCLUDE_DESCENDANTS", &u32::from(options.exclude_descendants), true)
        .override_global("FORK_CHILD_PID_OFFSET", &fork_child, true)
        .override_global("EXEC_FILENAME_OFFSET", &exec_filename, true)
        .override_global("CGROUP_MKDIR_ROOT_OFFSET", &mkdir_root, true)
        .override_global("CGROUP_MKDIR_ID_OFFSET", &mkdir_id, true)
        .override_global("CGROUP_MKDIR_PATH_OFFSET", &mkdir_path, true)
        .override_global("ARGV_MAX_BYTES", &options.argv_max_bytes, true)
        .override_global("REPEAT_LIMIT", &options.repeat_limit, true)
        .override_global("REPEAT_SEED", &random_seed(), true)
        .load(OBJECT)
        .map_err(|e| CollectError::Load(e.to_string()))?;
    install_path_filters(&mut ebpf, &options.path_filters)?;
    // Exit programs first: an entry program attached before its exit would leave a stale in-progress entry.
    let exits = PROGRAMS.iter().filter(|p| p.0.starts_with("sys_exit_"));
    for &(name, category, tracepoint, required) in
        exits.chain(PROGRAMS.iter().filter(|p| !p.0.starts_with("sys_exit_")))
    {
        if !required && !Path::new(TRACEFS).join("events").join(category).join(tracepoint).exists() {
            tracing::info!(tracepoint, "tracepoint absent on this kernel; skipped");
            continue;
        }
        if category == "cgroup" && cgroup_layout.is_err() {
            continue;
        }
        let program: &mut TracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| CollectError::Load(format!("program {name} missing from the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| CollectError::Load(format!("{name}: {e}")))?;
        program.load().map_err(|e| CollectError::Load(format!("{name}: {e:?}")))?;
        program
            .attach(category, tracepoint)
            .map_err(|e| CollectError::Load(format!("attach {category}/{tracepoint}: {e}")))?;
    }
    let ring =
        RingBuf::try_from(ebpf.take_map("EVENTS").ok_or_else(|| CollectError::Load("map EVENTS missing".into()))?)
            .map_err(|e| CollectError::Load(e.to_string()))?;
    let counters = PerCpuArray::try_from(
        ebpf.take_map("COUNTERS").ok_or_else(|| CollectError::Load("map COUNTERS missing".into()))?,
    )
    .map_err(|e| CollectError::Load(e.to_string()))?;
    let mut watched_inodes = aya::maps::HashMap::try_from(
        ebpf.take_map("WATCHED_INODES").ok_or_else(|| CollectError::Load("map WATCHED_INODES missing".into()))?,
    )
    .map_err(|e| CollectError::Load(e.to_string()))?;
    let mut warned = false;
    crate::watched_files::refresh(&mut watched_inodes, options.path_filters.prefixes, &mut warned);
    Ok(Loaded { ebpf, ring, counters, watched_inodes: Some(watched_inodes) })
}

#[cfg(test)]
mod tests {
    use super::{field_layout, field_offset};

    #[test]
    fn offsets_come_from_the_format_file() {
        let format = "name: sched_process_fork\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
                      \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
                      \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
                      \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(format, "child_pid"), Some(20));
        assert_eq!(field_offset(format, "parent_comm"), Some(8));
        assert_eq!(field_offset(format, "nope"), None);
        let mkdir = "format:\n\tfield:int root;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:u64 id;\toffset:16;\tsize:8;\tsigned:0;\n\
                     \tfield:__data_loc char[] path;\toffset:24;\tsize:4;\tsigned:0;\n";
        assert_eq!(field_layout(mkdir, "id"), Some((16, 8)));
        assert_eq!(field_layout(mkdir, "path"), Some((24, 4)));
        assert_eq!(field_layout(mkdir, "level"), None);
        let old = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(old, "parent_comm"), Some(8));
        assert_eq!(field_offset(old, "child_pid"), Some(44));
    }
}
