//! The paths file syscalls report, as the kernel resolved them where userspace can: relative paths joined to
//! the process's working directory (or the directory descriptor they were relative to), and `.`, `..` and
//! repeated slashes folded, so `/var/log//wtmp`, `/var/log/./wtmp` and `/var/log/x/../wtmp` are all
//! `/var/log/wtmp` to the rules. Symlinks are not followed here (the kernel's inode match catches opens of
//! watched files through them).

/// The collector's path filters, as the kernel applies them: a path starts with a prefix or ends with a suffix; a
/// relative path is read as if a `/` preceded it (`authorized_keys` meets `/authorized_keys`).
pub struct Filters {
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

impl Filters {
    pub fn new(prefixes: &[String], suffixes: &[String]) -> Self {
        Self { prefixes: prefixes.to_vec(), suffixes: suffixes.to_vec() }
    }

    pub fn watches(&self, path: &str) -> bool {
        let relative = !path.starts_with('/');
        self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
            || self.suffixes.iter().any(|s| {
                path.ends_with(s.as_str()) || (relative && s.strip_prefix('/').is_some_and(|bare| path == bare))
            })
    }
}

/// `AT_FDCWD` as the kernel reads the `int` directory argument.
const AT_FDCWD: i32 = -100;

/// Folds `.`, `..` and repeated slashes of an absolute path (`..` at the root stays at the root, as the kernel
/// resolves it). A relative path is folded the same way but stays relative.
pub fn fold(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if absolute { format!("/{joined}") } else { joined }
}

/// The directory a relative path of thread `pid` (of process `tgid`) starts from: its working directory (a
/// thread can have its own, after `unshare(CLONE_FS)`), or the directory open as `dirfd`; `None` when it is gone.
/// Read after the event: a process that changed directory since is resolved against the new one.
fn base(tgid: u32, pid: u32, dirfd: Option<i32>) -> Option<String> {
    let task = format!("/proc/{tgid}/task/{pid}");
    let link = match dirfd {
        Some(fd) if fd != AT_FDCWD => format!("{task}/fd/{fd}"),
        _ => format!("{task}/cwd"),
    };
    std::fs::read_link(link).ok().map(|p| p.display().to_string())
}

/// A path folded where its text has `//`, `.` or `..` segments; returned as it is otherwise.
pub fn tidy(path: &str) -> String {
    if needs_folding(path) { fold(path) } else { path.to_owned() }
}

/// A reported path as the rules should see it: absolute when its base can still be read, folded either way.
/// `..` is folded as text: through a symlinked directory the kernel may have gone elsewhere.
pub fn resolve(tgid: u32, pid: u32, dirfd: Option<i32>, path: &str) -> String {
    if path.is_empty() || path.starts_with('/') {
        return tidy(path);
    }
    match base(tgid, pid, dirfd) {
        Some(base) => fold(&format!("{base}/{path}")),
        None => fold(path),
    }
}

/// Most paths are already canonical: only those with `//`, `/.` segments or a trailing `/` are rebuilt.
fn needs_folding(path: &str) -> bool {
    path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
        || (path.len() > 1 && path.ends_with('/'))
        || path.starts_with("./")
        || path.starts_with("../")
        || path == "."
        || path == ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_relative_paths_as_the_kernel_does() {
        let filters =
            Filters::new(&["/etc/shadow".to_owned()], &["/authorized_keys".to_owned(), "_history".to_owned()]);
        for watched in
            ["/etc/shadow", "/root/.ssh/authorized_keys", "authorized_keys", ".bash_history", "x/authorized_keys"]
        {
            assert!(filters.watches(watched), "{watched}");
        }
        for unwatched in ["/etc/hostname", "/tmp/not_authorized_keys", "not_authorized_keys", "etc/shadow"] {
            assert!(!filters.watches(unwatched), "{unwatched}");
        }
    }

    #[test]
    fn spellings_fold_to_the_path_the_kernel_resolves() {
        for spelling in
            ["/var/log//wtmp", "/var/log/./wtmp", "/var/log/x/../wtmp", "//var/log/wtmp", "/../var/log/wtmp"]
        {
            assert_eq!(resolve(0, 0, None, spelling), "/var/log/wtmp", "{spelling}");
        }
        assert_eq!(fold("/etc/.ssh/../shadow"), "/etc/shadow");
        assert_eq!(fold("/etc/"), "/etc");
        assert_eq!(fold("/"), "/");
        assert_eq!(fold("a/./b//c/../d"), "a/b/d");
        assert_eq!(fold("../x"), "../x");
        assert_eq!(tidy("./a/../b"), "b");
        assert_eq!(tidy("/etc/shadow"), "/etc/shadow");
        assert_eq!(tidy("authorized_keys"), "authorized_keys");
        // Dotfiles are names, not `.` segments.
        assert_eq!(resolve(0, 0, None, "/root/.bash_history"), "/root/.bash_history");
        assert_eq!(resolve(0, 0, None, "/root/..hidden"), "/root/..hidden");
    }

    #[test]
    fn relative_paths_join_the_working_directory_or_the_directory_descriptor() {
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap().display().to_string();
        assert_eq!(resolve(me, me, None, "x/../y"), fold(&format!("{cwd}/y")));
        assert_eq!(resolve(me, me, Some(AT_FDCWD), "y"), fold(&format!("{cwd}/y")));
        let directory = std::fs::File::open("/etc").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&directory);
        assert_eq!(resolve(me, me, Some(fd), "shadow"), "/etc/shadow");
        // A process that is gone: folded, still relative.
        assert_eq!(resolve(u32::MAX, u32::MAX, None, "a/./b"), "a/b");
    }
}
