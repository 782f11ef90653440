//! What the exec program read of the new image's task, in `NodeEvent` terms: the kind of file behind
//! descriptors 0-2 (a socket there is how a reverse shell shows; a pipe is named `pipe:[inode]` as
//! `/proc/<pid>/fd` names it, so the two ends of `curl … | sh` find each other), the controlling terminal, the
//! effective uid and capabilities. Read in the kernel at exec time, so short-lived commands carry them too.

use palisade_collect_common::{TASK_READ_CRED, TASK_READ_FILES, TASK_READ_TTY, TaskInfo};

use crate::records::c_string;

const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;
const S_IFIFO: u16 = 0o010_000;
const S_IFCHR: u16 = 0o020_000;

/// The kernel's internal `dev_t`: 12 bits of major above 20 bits of minor.
fn major_minor(rdev: u32) -> (u32, u32) {
    (rdev >> 20, rdev & 0xF_FFFF)
}

/// The kind of file a descriptor refers to, from its inode's mode and device.
pub fn classify(open: bool, mode: u16, rdev: u32) -> &'static str {
    if !open {
        return "closed";
    }
    match mode & S_IFMT {
        S_IFSOCK => "socket",
        S_IFIFO => "pipe",
        S_IFCHR => match major_minor(rdev) {
            (1, 3) => "null",
            // tty, console and ptmx, and the Unix98 pty slaves.
            (4 | 5, _) | (136..=143, _) => "tty",
            _ => "device",
        },
        // anon_inode descriptors (eventfd, epoll, ...) have no file type bits.
        0 => "anon",
        _ => "file",
    }
}

/// `tty_struct.name` as a device path: `pts3` is `/dev/pts/3`, `tty1` is `/dev/tty1`.
pub fn tty_path(name: &str) -> String {
    match name.strip_prefix("pts") {
        Some(number) if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            format!("/dev/pts/{number}")
        }
        _ => format!("/dev/{name}"),
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub stdio: Vec<String>,
    pub tty: Option<String>,
    pub capabilities_effective: Option<i64>,
    pub effective_uid: Option<i64>,
}

impl From<&TaskInfo> for TaskView {
    fn from(task: &TaskInfo) -> Self {
        let stdio = if task.read & TASK_READ_FILES != 0 {
            (0..3)
                .map(|fd| {
                    let kind = classify(task.stdio_open & (1 << fd) != 0, task.stdio_mode[fd], task.stdio_rdev[fd]);
                    match (kind, task.stdio_ino[fd]) {
                        ("pipe", ino) if ino != 0 => format!("pipe:[{ino}]"),
                        _ => kind.to_owned(),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let tty = (task.read & TASK_READ_TTY != 0)
            .then(|| c_string(&task.tty))
            .filter(|name| !name.is_empty())
            .map(|name| tty_path(&name));
        let cred = task.read & TASK_READ_CRED != 0;
        Self {
            stdio,
            tty,
            capabilities_effective: cred.then_some(task.cap_effective as i64),
            effective_uid: cred.then_some(i64::from(task.euid)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_kinds_come_from_mode_and_device() {
        assert_eq!(classify(true, S_IFSOCK | 0o777, 0), "socket");
        assert_eq!(classify(true, S_IFIFO | 0o600, 0), "pipe");
        assert_eq!(classify(true, S_IFCHR | 0o620, (136 << 20) | 3), "tty");
        assert_eq!(classify(true, S_IFCHR | 0o666, (1 << 20) | 3), "null");
        assert_eq!(classify(true, S_IFCHR | 0o666, (1 << 20) | 8), "device");
        assert_eq!(classify(true, 0o100_644, 0), "file");
        assert_eq!(classify(true, 0o600, 0), "anon");
        assert_eq!(classify(false, 0, 0), "closed");
    }

    #[test]
    fn terminal_names_become_device_paths() {
        assert_eq!(tty_path("pts3"), "/dev/pts/3");
        assert_eq!(tty_path("tty1"), "/dev/tty1");
        assert_eq!(tty_path("ttyS0"), "/dev/ttyS0");
        assert_eq!(tty_path("ptsx"), "/dev/ptsx");
    }

    #[test]
    fn unread_parts_stay_unknown() {
        let mut task = TaskInfo {
            read: TASK_READ_CRED,
            euid: 0,
            cap_effective: 0x1ff_ffff_ffff,
            stdio_ino: [0; 3],
            stdio_rdev: [0; 3],
            stdio_mode: [S_IFSOCK; 3],
            stdio_open: 0b111,
            tty: [0; palisade_collect_common::TTY_NAME_LEN],
            reserved: 0,
        };
        let view = TaskView::from(&task);
        assert_eq!(view.capabilities_effective, Some(0x1ff_ffff_ffff));
        assert_eq!(view.effective_uid, Some(0));
        assert!(view.stdio.is_empty(), "descriptors were not read");
        assert_eq!(view.tty, None);
        task.read |= TASK_READ_FILES | TASK_READ_TTY;
        task.tty[..4].copy_from_slice(b"pts7");
        let view = TaskView::from(&task);
        assert_eq!(view.stdio, ["socket", "socket", "socket"]);
        assert_eq!(view.tty.as_deref(), Some("/dev/pts/7"));
        task.stdio_mode = [S_IFIFO | 0o600, S_IFIFO | 0o600, S_IFCHR | 0o620];
        task.stdio_ino = [4711, 0, 9];
        let view = TaskView::from(&task);
        assert_eq!(view.stdio, ["pipe:[4711]", "pipe", "device"], "a pipe carries its inode when it was read");
    }
}
