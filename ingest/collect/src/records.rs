//! Decoding of ring-buffer records into owned values.

use palisade_collect_common::{
    ARGV_LIMIT, CGROUP_PATH_LEN, CgroupEvent, EventHeader, ExecEvent, ExitEvent, FLAG_ARGV_MISSING,
    FLAG_ARGV_TRUNCATED, ForkEvent, KIND_CGROUP, KIND_EXEC, KIND_EXIT, KIND_FORK, KIND_SEND, KIND_SYSCALL, SendEvent,
    SyscallEvent, TaskInfo,
};

use crate::process_table::split_nul;

#[derive(Clone)]
pub enum Record {
    Exec {
        header: EventHeader,
        task: TaskInfo,
        filename: String,
        argv: Vec<String>,
        argv_truncated: bool,
        argv_missing: bool,
    },
    Fork {
        header: EventHeader,
        child_pid: u32,
        clone_flags: Option<u64>,
    },
    Send(Box<SendEvent>),
    Exit {
        header: EventHeader,
        exit_code: Option<i32>,
    },
    Syscall(Box<SyscallEvent>),
    /// A cgroup created, with its path (`None` when longer than the record holds: its end, where a container's name
    /// is, is unknown), or removed.
    CgroupCreated {
        id: u64,
        path: Option<String>,
    },
    CgroupRemoved {
        id: u64,
    },
}

fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; the records are plain old data written by our own eBPF programs.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

pub fn decode(bytes: &[u8]) -> Option<Record> {
    let header: EventHeader = read(bytes)?;
    match header.kind {
        KIND_EXEC => {
            let event: ExecEvent = read(bytes)?;
            let length = (event.argv_len as usize).min(ARGV_LIMIT);
            Some(Record::Exec {
                header,
                task: event.task,
                filename: c_string(&event.filename),
                argv: split_nul(&event.argv[..length]),
                argv_truncated: event.flags & FLAG_ARGV_TRUNCATED != 0,
                argv_missing: event.flags & FLAG_ARGV_MISSING != 0,
            })
        }
        KIND_FORK => read::<ForkEvent>(bytes).map(|e| Record::Fork {
            header,
            child_pid: e.child_pid,
            clone_flags: (e.has_flags != 0).then_some(e.clone_flags),
        }),
        KIND_SEND => read::<SendEvent>(bytes).map(|e| Record::Send(Box::new(e))),
        KIND_EXIT => read::<ExitEvent>(bytes)
            .map(|e| Record::Exit { header, exit_code: (e.has_exit_code != 0).then_some(e.exit_code) }),
        KIND_SYSCALL => read::<SyscallEvent>(bytes).map(|e| Record::Syscall(Box::new(e))),
        KIND_CGROUP => read::<CgroupEvent>(bytes).map(|e| match e.removed {
            0 => Record::CgroupCreated {
                id: e.id,
                path: (e.length as usize <= CGROUP_PATH_LEN).then(|| c_string(&e.path)),
            },
            _ => Record::CgroupRemoved { id: e.id },
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_collect_common::CGROUP_PATH_LEN;

    fn cgroup_record(length: u32, removed: u32, path: &str) -> Vec<u8> {
        let mut event = CgroupEvent {
            // SAFETY: a plain-old-data header; zero is a valid value of each field.
            header: unsafe { std::mem::zeroed() },
            id: 42,
            length,
            removed,
            path: [0; CGROUP_PATH_LEN],
        };
        event.header.kind = KIND_CGROUP;
        event.path[..path.len()].copy_from_slice(path.as_bytes());
        // SAFETY: reading the bytes of a plain-old-data record with no padding (see its size assert).
        unsafe {
            std::slice::from_raw_parts((&event as *const CgroupEvent).cast::<u8>(), std::mem::size_of::<CgroupEvent>())
        }
        .to_vec()
    }

    #[test]
    fn cgroup_records_keep_a_whole_path_and_drop_a_cut_one() {
        let whole = decode(&cgroup_record(CGROUP_PATH_LEN as u32, 0, "/kubepods/x"));
        assert!(matches!(whole, Some(Record::CgroupCreated { id: 42, path: Some(p) }) if p == "/kubepods/x"));
        let cut = decode(&cgroup_record(CGROUP_PATH_LEN as u32 + 1, 0, "/kubepods/x"));
        assert!(matches!(cut, Some(Record::CgroupCreated { id: 42, path: None })));
        let removed = decode(&cgroup_record(12, 1, ""));
        assert!(matches!(removed, Some(Record::CgroupRemoved { id: 42 })));
        assert!(decode(&cgroup_record(12, 0, "")[..40]).is_none(), "a short record is refused");
    }
}
