//! The watched files that exist, by device and inode. The kernel filters file syscalls by the path as written;
//! an open that reaches a watched file by another spelling (a symlink, a hard link, a path relative to the
//! working directory, `/etc//shadow`, `/proc/1/root/etc/shadow`, the host's root mounted at `/host`) passes no
//! path filter, but returns a descriptor of the same inode. The open's exit program looks the inode up here.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, MapData};
use palisade_collect_common::{MAX_WATCHED_INODES, PATH_LEN};

/// (device as the kernel encodes it in `super_block.s_dev`, inode number).
pub type InodeKey = [u64; 2];

/// Prefixes whose files come and go by the thousand (scratch space, logs): not listed. An open of their files
/// by another spelling is not seen; their writes and removals are, by path.
const UNLISTED: [&str; 4] = ["/tmp/", "/var/tmp/", "/dev/shm/", "/var/log/"];

/// The logs that record who logged in (the detector's `user_activity_logs`), listed although `/var/log/` is not:
/// a log shipper's pod mounts the host's `/var/log`, and `: > /hostlog/wtmp` must still be seen.
const ACTIVITY_LOGS: [&str; 10] = [
    "/var/log/wtmp",
    "/var/log/btmp",
    "/var/log/lastlog",
    "/var/log/auth.log",
    "/var/log/secure",
    "/var/log/syslog",
    "/var/log/messages",
    "/var/log/audit/audit.log",
    "/run/utmp",
    "/var/run/utmp",
];

/// Files listed from one directory at most: a directory an attacker can fill must not crowd out the others.
const PER_DIRECTORY: usize = 256;

/// The host's root as this process can read it: `/proc/1/root` when the collector runs in a pod (with hostPID, its
/// own root is the image's), else `/`.
pub fn host_root() -> PathBuf {
    let host = PathBuf::from("/proc/1/root");
    if std::fs::read_dir(host.join("etc")).is_ok() { host } else { PathBuf::from("/") }
}

/// `MKDEV(major, minor)` as the kernel keeps it: major << 20 | minor (userspace's `st_dev` encodes it otherwise).
pub fn kernel_device(st_dev: u64) -> u64 {
    (u64::from(libc::major(st_dev)) << 20) | u64::from(libc::minor(st_dev))
}

/// The regular files the prefixes name under `root` (the host's): a prefix is a path's beginning, so
/// `/etc/shadow` names `/etc/shadow` and `/etc/shadow-`, `/etc/cron` names `/etc/crontab` and the files in
/// `/etc/cron.d/`, and `/etc/kubernetes/` names the files in it and in its subdirectories (one level), plus the
/// user-activity logs. Symlinks are not followed (a link's target is listed under its own name if that is
/// watched), nor directories on another file system (a mount point may hang). Files named exactly go first, at
/// most `PER_DIRECTORY` from one directory, at most `limit` in all; the second value says whether some were left
/// out.
pub fn watched_files(root: &Path, prefixes: &[String], limit: usize) -> (HashMap<InodeKey, String>, bool) {
    let mut files = HashMap::new();
    let mut left_out = false;
    let mut add = |path: &str, files: &mut HashMap<InodeKey, String>| -> Option<std::fs::Metadata> {
        let metadata = std::fs::symlink_metadata(root.join(path.trim_start_matches('/'))).ok()?;
        if metadata.is_file() && path.len() < PATH_LEN {
            if files.len() >= limit {
                left_out = true;
            } else {
                files.entry([kernel_device(metadata.dev()), metadata.ino()]).or_insert_with(|| path.to_owned());
            }
        }
        metadata.is_dir().then_some(metadata)
    };
    for log in ACTIVITY_LOGS {
        add(log, &mut files);
    }
    let listed = prefixes.iter().filter(|p| p.starts_with('/') && !UNLISTED.contains(&p.as_str()));
    let (exact, directories): (Vec<&String>, Vec<&String>) = listed.partition(|p| !p.ends_with('/'));
    for prefix in exact.into_iter().chain(directories) {
        let (directory, stem) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let directory = if directory.is_empty() { "/" } else { directory };
        let Ok(parent) = std::fs::symlink_metadata(root.join(directory.trim_start_matches('/'))) else { continue };
        let names = entries(root, directory).into_iter().filter(|name| name.starts_with(stem)).take(PER_DIRECTORY);
        for name in names {
            let path = format!("{}/{name}", directory.trim_end_matches('/'));
            if let Some(inner_directory) = add(&path, &mut files)
                && inner_directory.dev() == parent.dev()
            {
                for inner in entries(root, &path).into_iter().take(PER_DIRECTORY) {
                    add(&format!("{path}/{inner}"), &mut files);
                }
            }
        }
    }
    (files, left_out)
}

fn entries(root: &Path, directory: &str) -> Vec<String> {
    let Ok(reader) = std::fs::read_dir(root.join(directory.trim_start_matches('/'))) else { return Vec::new() };
    let mut names: Vec<String> = reader.flatten().filter_map(|entry| entry.file_name().into_string().ok()).collect();
    names.sort();
    names
}

/// Makes the kernel's `WATCHED_INODES` hold exactly `files`.
pub fn install(map: &mut BpfHashMap<MapData, InodeKey, [u8; PATH_LEN]>, files: &HashMap<InodeKey, String>) {
    let stale: Vec<InodeKey> = map.keys().flatten().filter(|key| !files.contains_key(key)).collect();
    for key in stale {
        let _ = map.remove(&key);
    }
    for (key, path) in files {
        let mut value = [0u8; PATH_LEN];
        value[..path.len()].copy_from_slice(path.as_bytes());
        if let Err(error) = map.insert(key, value, 0) {
            tracing::warn!(path, %error, "watched file not installed in the kernel table");
        }
    }
}

/// Lists the files and installs them; said once when the table is full.
pub fn refresh(map: &mut BpfHashMap<MapData, InodeKey, [u8; PATH_LEN]>, prefixes: &[String], warned: &mut bool) {
    let (files, left_out) = watched_files(&host_root(), prefixes, MAX_WATCHED_INODES as usize);
    if left_out && !*warned {
        *warned = true;
        tracing::warn!(
            limit = MAX_WATCHED_INODES,
            "more watched files than the kernel table holds; the rest are watched by path only"
        );
    }
    install(map, &files);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_name_files_by_their_beginning_and_directories_one_level_down() {
        let root = tempfile_dir();
        for path in ["etc/shadow", "etc/shadow-", "etc/shadowed/x", "etc/crontab", "etc/cron.d/job", "etc/hostname"] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        std::fs::create_dir_all(root.join("etc/kubernetes/pki/deeper")).unwrap();
        std::fs::write(root.join("etc/kubernetes/admin.conf"), "x").unwrap();
        std::fs::write(root.join("etc/kubernetes/pki/ca.key"), "x").unwrap();
        std::fs::write(root.join("etc/kubernetes/pki/deeper/too-deep"), "x").unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::write(root.join("tmp/scratch"), "x").unwrap();
        let prefixes: Vec<String> =
            ["/etc/shadow", "/etc/cron", "/etc/kubernetes/", "/tmp/", "relative"].map(str::to_owned).to_vec();
        let (files, left_out) = watched_files(&root, &prefixes, 100);
        let mut names: Vec<&str> = files.values().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "/etc/cron.d/job",
                "/etc/crontab",
                "/etc/kubernetes/admin.conf",
                "/etc/kubernetes/pki/ca.key",
                "/etc/shadow",
                "/etc/shadow-",
                "/etc/shadowed/x"
            ]
        );
        assert!(!left_out);
        let metadata = std::fs::metadata(root.join("etc/shadow")).unwrap();
        assert_eq!(
            files.get(&[kernel_device(metadata.dev()), metadata.ino()]).map(String::as_str),
            Some("/etc/shadow")
        );
        let (files, left_out) = watched_files(&root, &prefixes, 2);
        assert_eq!(files.len(), 2);
        assert!(left_out, "a full table says so");
        let mut first: Vec<&str> = files.values().map(String::as_str).collect();
        first.sort();
        assert_eq!(first, ["/etc/shadow", "/etc/shadow-"], "files named exactly go before directories' files");

        // A symlink is not followed (its target would be listed under the link's name), and one directory gives
        // at most PER_DIRECTORY files.
        std::os::unix::fs::symlink("/etc/hostname", root.join("etc/cron.d/link")).unwrap();
        for index in 0..PER_DIRECTORY + 10 {
            std::fs::write(root.join(format!("etc/kubernetes/pki/f{index:04}")), "x").unwrap();
        }
        let (files, _) = watched_files(&root, &prefixes, 10_000);
        assert!(!files.values().any(|p| p.ends_with("/link")));
        // PER_DIRECTORY entries, one of them the `deeper` directory.
        assert_eq!(files.values().filter(|p| p.starts_with("/etc/kubernetes/pki/")).count(), PER_DIRECTORY - 1);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn devices_are_encoded_as_the_kernel_does() {
        // 8:1 (sda1) and 259:3 (nvme0n1p3): glibc's st_dev encoding to MKDEV.
        assert_eq!(kernel_device(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_device(libc::makedev(259, 3)), (259 << 20) | 3);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "palisade-watched-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
