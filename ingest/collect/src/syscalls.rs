//! Syscall-entry records → the `NodeEvent` kinds and details they mean.

use std::net::{Ipv4Addr, Ipv6Addr};

use palisade_collect_common::*;
use palisade_schemas::{FileDetail, NamespaceDetail, NetDetail, NodeEventKind, PrivilegeDetail, SignalDetail};

use crate::records::c_string;

/// What a syscall record says, before the process context is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    File(FileDetail),
    Net(NetDetail),
    Namespace(NamespaceDetail),
    Signal(SignalDetail),
    Privilege(PrivilegeDetail),
}

pub fn syscall_name(syscall: u32) -> &'static str {
    match syscall {
        SYS_CONNECT => "connect",
        SYS_UNSHARE => "unshare",
        SYS_SETNS => "setns",
        SYS_CLONE => "clone",
        SYS_CLONE3 => "clone3",
        SYS_KILL => "kill",
        SYS_TKILL => "tkill",
        SYS_TGKILL => "tgkill",
        SYS_SETUID => "setuid",
        SYS_SETGID => "setgid",
        SYS_SETREUID => "setreuid",
        SYS_SETREGID => "setregid",
        SYS_SETRESUID => "setresuid",
        SYS_SETRESGID => "setresgid",
        SYS_OPENAT => "openat",
        SYS_UNLINKAT => "unlinkat",
        SYS_UNLINK => "unlink",
        SYS_RENAMEAT2 => "renameat2",
        SYS_RENAMEAT => "renameat",
        SYS_LISTEN => "listen",
        SYS_ACCEPT => "accept",
        SYS_CAPSET => "capset",
        SYS_RENAME => "rename",
        SYS_UTIMENSAT => "utimensat",
        SYS_FCHMODAT => "fchmodat",
        SYS_FCHOWNAT => "fchownat",
        SYS_TRUNCATE => "truncate",
        SYS_OPEN => "open",
        SYS_CREAT => "creat",
        SYS_OPENAT2 => "openat2",
        SYS_CHMOD => "chmod",
        SYS_FCHMODAT2 => "fchmodat2",
        SYS_CHOWN => "chown",
        SYS_LCHOWN => "lchown",
        SYS_FTRUNCATE => "ftruncate",
        SYS_FCHMOD => "fchmod",
        SYS_FCHOWN => "fchown",
        SYS_PIDFD_SEND_SIGNAL => "pidfd_send_signal",
        SYS_OPEN_WATCHED_INODE => "open",
        _ => "unknown",
    }
}

fn file(path: String) -> FileDetail {
    FileDetail {
        path,
        new_path: None,
        flags: 0,
        mode: None,
        owner_uid: None,
        owner_gid: None,
        atime_ns: None,
        mtime_ns: None,
    }
}

/// creat(2) is open(2) with these flags.
const CREAT_FLAGS: i64 = 0o1101; // O_CREAT | O_WRONLY | O_TRUNC

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_ne_bytes(bytes[offset..offset + 8].try_into().unwrap_or_default())
}

/// A signal to a process. Signals and pids are `int`s: the kernel ignores the upper half of the register, so the
/// record does too.
fn signal(number: u64, target: u64) -> Meaning {
    Meaning::Signal(SignalDetail {
        signal: number as i32 as i64,
        target_pid: target as i32 as i64,
        target_executable: None,
    })
}

/// A 32-bit id argument, where -1 (u32::MAX) means "unchanged".
fn id(value: u64) -> Option<i64> {
    let value = value as u32;
    (value != u32::MAX).then_some(i64::from(value))
}

fn timespec_ns(bytes: &[u8]) -> Option<i64> {
    let seconds = i64::from_ne_bytes(bytes[..8].try_into().ok()?);
    let nanos = i64::from_ne_bytes(bytes[8..16].try_into().ok()?);
    // UTIME_NOW and UTIME_OMIT are special nanosecond values, not times.
    if nanos == (1 << 30) - 1 || nanos == (1 << 30) - 2 {
        return None;
    }
    Some(seconds.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Parses a sockaddr_in / sockaddr_in6 (family, port, address).
pub fn sockaddr(bytes: &[u8]) -> Option<NetDetail> {
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
    let port = i64::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let (family, address) = match family {
        2 => ("inet", Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]).to_string()),
        10 => {
            let octets: [u8; 16] = bytes[8..24].try_into().ok()?;
            ("inet6", Ipv6Addr::from(octets).to_string())
        }
        _ => return None,
    };
    Some(NetDetail {
        family: family.to_owned(),
        protocol: "ip".to_owned(),
        src_addr: None,
        src_port: None,
        dst_addr: Some(address),
        dst_port: Some(port),
        payload_head: None,
    })
}

/// The directory descriptors a syscall's first and second paths are relative to (`None`: the working directory).
pub fn directory_arguments(event: &SyscallEvent) -> (Option<i32>, Option<i32>) {
    let dirfd = |index: usize| Some(event.args[index] as i32);
    match event.syscall {
        SYS_OPENAT | SYS_OPENAT2 | SYS_UNLINKAT | SYS_FCHMODAT | SYS_FCHMODAT2 | SYS_FCHOWNAT | SYS_UTIMENSAT => {
            (dirfd(0), None)
        }
        SYS_RENAMEAT | SYS_RENAMEAT2 => (dirfd(0), dirfd(2)),
        _ => (None, None),
    }
}

pub fn meaning(event: &SyscallEvent) -> Option<(NodeEventKind, Meaning)> {
    let path = c_string(&event.path);
    let args = event.args;
    let name = syscall_name(event.syscall).to_owned();
    Some(match event.syscall {
        SYS_OPENAT | SYS_OPEN | SYS_CREAT | SYS_OPENAT2 | SYS_OPEN_WATCHED_INODE => {
            let (flags, mode) = match event.syscall {
                SYS_OPENAT | SYS_OPEN_WATCHED_INODE => (args[2] as i64, args[3] as i64),
                SYS_OPEN => (args[1] as i64, args[2] as i64),
                SYS_CREAT => (CREAT_FLAGS, args[1] as i64),
                _ => (u64_at(&event.extra, 0) as i64, u64_at(&event.extra, 8) as i64),
            };
            let mut detail = file(path);
            detail.flags = flags;
            detail.mode = Some(mode);
            (NodeEventKind::FileOpen, Meaning::File(detail))
        }
        SYS_UNLINKAT | SYS_UNLINK => {
            let mut detail = file(path);
            if event.syscall == SYS_UNLINKAT {
                detail.flags = args[2] as i64;
            }
            (NodeEventKind::FileUnlink, Meaning::File(detail))
        }
        SYS_RENAMEAT2 | SYS_RENAMEAT | SYS_RENAME => {
            let mut detail = file(path);
            detail.new_path = Some(c_string(&event.path2));
            (NodeEventKind::FileRename, Meaning::File(detail))
        }
        SYS_FCHMODAT | SYS_FCHMODAT2 | SYS_CHMOD | SYS_FCHMOD => {
            let mut detail = file(path);
            let mode = if matches!(event.syscall, SYS_CHMOD | SYS_FCHMOD) { args[1] } else { args[2] };
            detail.mode = Some(mode as i64);
            (NodeEventKind::FileChmod, Meaning::File(detail))
        }
        SYS_FCHOWNAT | SYS_CHOWN | SYS_LCHOWN | SYS_FCHOWN => {
            let mut detail = file(path);
            let (uid, gid) = if event.syscall == SYS_FCHOWNAT { (args[2], args[3]) } else { (args[1], args[2]) };
            detail.owner_uid = id(uid);
            detail.owner_gid = id(gid);
            (NodeEventKind::FileChown, Meaning::File(detail))
        }
        SYS_TRUNCATE | SYS_FTRUNCATE => {
            let mut detail = file(path);
            detail.flags = args[1] as i64;
            (NodeEventKind::FileTruncate, Meaning::File(detail))
        }
        SYS_UTIMENSAT => {
            let mut detail = file(path);
            if args[2] != 0 {
                detail.atime_ns = timespec_ns(&event.extra[..16]);
                detail.mtime_ns = timespec_ns(&event.extra[16..32]);
            }
            (NodeEventKind::FileUtimes, Meaning::File(detail))
        }
        SYS_CONNECT => (NodeEventKind::NetConnect, Meaning::Net(sockaddr(&event.extra)?)),
        SYS_LISTEN => {
            // The bound address is the local end.
            let mut net = sockaddr(&event.extra)?;
            (net.src_addr, net.src_port) = (net.dst_addr.take(), net.dst_port.take());
            net.protocol = "tcp".into();
            (NodeEventKind::NetListen, Meaning::Net(net))
        }
        SYS_ACCEPT => {
            // The peer is the remote end, which started the connection.
            let mut net = sockaddr(&event.extra)?;
            (net.src_addr, net.src_port) = (net.dst_addr.take(), net.dst_port.take());
            net.protocol = "tcp".into();
            (NodeEventKind::NetAccept, Meaning::Net(net))
        }
        SYS_UNSHARE | SYS_CLONE => {
            let detail = NamespaceDetail { syscall: name, flags: (args[0] & CLONE_NEW_MASK) as i64 };
            (NodeEventKind::NamespaceChange, Meaning::Namespace(detail))
        }
        SYS_CLONE3 => {
            let detail = NamespaceDetail { syscall: name, flags: (args[2] & CLONE_NEW_MASK) as i64 };
            (NodeEventKind::NamespaceChange, Meaning::Namespace(detail))
        }
        SYS_SETNS => (
            NodeEventKind::NamespaceChange,
            Meaning::Namespace(NamespaceDetail { syscall: name, flags: i64::from(args[1] as u32) }),
        ),
        SYS_KILL | SYS_TKILL => (NodeEventKind::Signal, signal(args[1], args[0])),
        // The target's pid was read in the kernel from the descriptor (0 when it could not be).
        SYS_PIDFD_SEND_SIGNAL => (NodeEventKind::Signal, signal(args[1], args[4])),
        SYS_TGKILL => (NodeEventKind::Signal, signal(args[2], args[0])),
        SYS_SETUID | SYS_SETREUID | SYS_SETRESUID => {
            // The effective id is the one that grants privilege: the only argument, or the second.
            let effective = if event.syscall == SYS_SETUID { args[0] } else { args[1] };
            let detail =
                PrivilegeDetail { syscall: name, new_uid: id(effective), new_gid: None, new_capabilities: None };
            (NodeEventKind::PrivilegeChange, Meaning::Privilege(detail))
        }
        SYS_CAPSET => {
            // Effective sets: low 32 bits in the first struct, high 32 bits in the second.
            let word =
                |offset: usize| u32::from_ne_bytes(event.extra[offset..offset + 4].try_into().unwrap_or_default());
            let effective = u64::from(word(0)) | (u64::from(word(12)) << 32);
            let detail = PrivilegeDetail {
                syscall: name,
                new_uid: None,
                new_gid: None,
                new_capabilities: Some(effective as i64),
            };
            (NodeEventKind::PrivilegeChange, Meaning::Privilege(detail))
        }
        SYS_SETGID | SYS_SETREGID | SYS_SETRESGID => {
            let effective = if event.syscall == SYS_SETGID { args[0] } else { args[1] };
            let detail =
                PrivilegeDetail { syscall: name, new_uid: None, new_gid: id(effective), new_capabilities: None };
            (NodeEventKind::PrivilegeChange, Meaning::Privilege(detail))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_parse_for_both_families() {
        let mut v4 = [0u8; 32];
        v4[..2].copy_from_slice(&2u16.to_ne_bytes());
        v4[2..4].copy_from_slice(&80u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[169, 254, 169, 254]);
        let net = sockaddr(&v4).unwrap();
        assert_eq!((net.dst_addr.as_deref(), net.dst_port), (Some("169.254.169.254"), Some(80)));
        let mut v6 = [0u8; 32];
        v6[..2].copy_from_slice(&10u16.to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"fd00:ec2::254".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(sockaddr(&v6).unwrap().dst_addr.as_deref(), Some("fd00:ec2::254"));
        let mut unix = [0u8; 32];
        unix[..2].copy_from_slice(&1u16.to_ne_bytes());
        assert_eq!(sockaddr(&unix), None);
    }

    #[test]
    fn special_utime_values_are_not_times() {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&5i64.to_ne_bytes());
        bytes[8..].copy_from_slice(&7i64.to_ne_bytes());
        assert_eq!(timespec_ns(&bytes), Some(5_000_000_007));
        bytes[8..].copy_from_slice(&((1i64 << 30) - 1).to_ne_bytes());
        assert_eq!(timespec_ns(&bytes), None, "UTIME_NOW");
        assert_eq!(id(u64::from(u32::MAX)), None);
        assert_eq!(id(0), Some(0));
    }
}
