//! Loads and attaches the embedded eBPF object. Checks what it needs first and says clearly what is missing:
//! root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN), kernel BTF, tracefs (mounted here when absent).

use std::path::Path;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};

use crate::collector::CollectError;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/palisade-collect-ebpf"));

const TRACEFS: &str = "/sys/kernel/tracing";

/// (program, tracepoint category, tracepoint name)
const PROGRAMS: [(&str, &str, &str); 7] = [
    ("sys_enter_execve", "syscalls", "sys_enter_execve"),
    ("sys_enter_execveat", "syscalls", "sys_enter_execveat"),
    ("sys_exit_execve", "syscalls", "sys_exit_execve"),
    ("sys_exit_execveat", "syscalls", "sys_exit_execveat"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exit", "sched", "sched_process_exit"),
];

pub struct Loaded {
    /// Keeps the programs attached while alive.
    pub ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
}

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

fn offset_of(category: &str, event: &str, field: &str) -> Result<u32, CollectError> {
    let path = format!("{TRACEFS}/events/{category}/{event}/format");
    let format = std::fs::read_to_string(&path)
        .map_err(|e| CollectError::Format { path: path.clone(), reason: e.to_string() })?;
    field_offset(&format, field).ok_or_else(|| CollectError::Format { path, reason: format!("no field `{field}`") })
}

pub fn load(collector_tgid: u32) -> Result<Loaded, CollectError> {
    if let Some(reason) = unavailable_reason() {
        return Err(CollectError::Unavailable(reason));
    }
    ensure_tracefs()?;
    let fork_child = offset_of("sched", "sched_process_fork", "child_pid")?;
    let exec_filename = offset_of("sched", "sched_process_exec", "filename")?;
    let exec_old_pid = offset_of("sched", "sched_process_exec", "old_pid")?;
    let mut ebpf = EbpfLoader::new()
        .override_global("COLLECTOR_TGID", &collector_tgid, true)
        .override_global("FORK_CHILD_PID_OFFSET", &fork_child, true)
        .override_global("EXEC_FILENAME_OFFSET", &exec_filename, true)
        .override_global("EXEC_OLD_PID_OFFSET", &exec_old_pid, true)
        .load(OBJECT)
        .map_err(|e| CollectError::Load(e.to_string()))?;
    for (name, category, tracepoint) in PROGRAMS {
        let program: &mut TracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| CollectError::Load(format!("program {name} missing from the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| CollectError::Load(format!("{name}: {e}")))?;
        program.load().map_err(|e| CollectError::Load(format!("{name}: {e}")))?;
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
    Ok(Loaded { ebpf, ring, counters })
}

#[cfg(test)]
mod tests {
    use super::field_offset;

    #[test]
    fn offsets_come_from_the_format_file() {
        let format = "name: sched_process_fork\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
                      \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
                      \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
                      \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(format, "child_pid"), Some(20));
        assert_eq!(field_offset(format, "parent_comm"), Some(8));
        assert_eq!(field_offset(format, "nope"), None);
        let old = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(field_offset(old, "parent_comm"), Some(8));
        assert_eq!(field_offset(old, "child_pid"), Some(44));
    }
}
