//! Container attribution from cgroup paths: containerd, CRI-O and Docker layouts under cgroup v1 and v2,
//! with the pod UID from kubepods slices. Resolution by cgroup id (the inode of the v2 cgroup directory) is
//! cached, so a process that already exited can still be attributed.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use dashmap::DashMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Container id and pod UID from one cgroup path.
pub fn parse_cgroup_path(path: &str) -> Attribution {
    let mut attribution = Attribution::default();
    for segment in path.split('/') {
        let segment = segment.strip_suffix(".scope").unwrap_or(segment);
        // cri-containerd-<id>, crio-<id>, docker-<id>, or a bare id (cgroupfs driver, v1 docker).
        let candidate = segment.rsplit(['-', ':']).next().unwrap_or(segment);
        if is_container_id(candidate) {
            attribution.container_id = Some(candidate.to_owned());
        }
        // kubepods-besteffort-pod<uid with _>.slice (systemd) or pod<uid> (cgroupfs).
        let slice = segment.strip_suffix(".slice").unwrap_or(segment);
        if let Some(index) = slice.rfind("pod") {
            let uid = slice[index + 3..].replace('_', "-");
            if uid.len() == 36 && uid.bytes().filter(|b| *b == b'-').count() == 4 {
                attribution.pod_uid = Some(uid);
            }
        }
    }
    attribution
}

/// Attribution from `/proc/<pid>/cgroup` content: the v2 line (`0::/...`) first, else any v1 line naming a
/// container.
pub fn parse_proc_cgroup(content: &str) -> Attribution {
    let mut best = Attribution::default();
    for line in content.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or_default();
        let attribution = parse_cgroup_path(path);
        if attribution.container_id.is_some() {
            return attribution;
        }
        if best.pod_uid.is_none() {
            best = attribution;
        }
    }
    best
}

/// Resolves cgroup ids to attributions, caching the answers.
pub struct CgroupResolver {
    root: Option<PathBuf>,
    cache: DashMap<u64, Attribution>,
}

impl CgroupResolver {
    /// `root` is the cgroup v2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
    pub fn new() -> Self {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.procs").exists());
        Self { root, cache: DashMap::new() }
    }

    /// Attribution for a process: from its `/proc` entry while it lives, else from the cgroup id.
    pub fn attribute(&self, pid: u32, cgroup_id: u64) -> Attribution {
        if let Some(cached) = self.cache.get(&cgroup_id) {
            return cached.clone();
        }
        let attribution = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|content| parse_proc_cgroup(&content))
            .ok()
            .or_else(|| self.find_by_id(cgroup_id).map(|p| parse_cgroup_path(&p)))
            .unwrap_or_default();
        self.cache.insert(cgroup_id, attribution.clone());
        attribution
    }

    fn find_by_id(&self, cgroup_id: u64) -> Option<String> {
        let root = self.root.as_ref()?;
        let mut stack = vec![(root.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == cgroup_id) {
                return dir.strip_prefix(root).ok().map(|p| format!("/{}", p.display()));
            }
            if depth < 8 {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push((entry.path(), depth + 1));
                    }
                }
            }
        }
        None
    }
}

impl Default for CgroupResolver {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    #[test]
    fn containerd_systemd_v2() {
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d9a2f4e_1111_2222_3333_444455556666.slice/cri-containerd-{ID}.scope"
        );
        let a = parse_cgroup_path(&path);
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.pod_uid.as_deref(), Some("0d9a2f4e-1111-2222-3333-444455556666"));
    }

    #[test]
    fn crio_docker_and_cgroupfs_layouts() {
        assert_eq!(parse_cgroup_path(&format!("/kubepods.slice/crio-{ID}.scope")).container_id.as_deref(), Some(ID));
        assert_eq!(parse_cgroup_path(&format!("/system.slice/docker-{ID}.scope")).container_id.as_deref(), Some(ID));
        let cgroupfs = parse_cgroup_path(&format!("/kubepods/burstable/pod0d9a2f4e-1111-2222-3333-444455556666/{ID}"));
        assert_eq!(cgroupfs.container_id.as_deref(), Some(ID));
        assert_eq!(cgroupfs.pod_uid.as_deref(), Some("0d9a2f4e-1111-2222-3333-444455556666"));
        assert_eq!(parse_cgroup_path(&format!("/docker/{ID}")).container_id.as_deref(), Some(ID));
    }

    #[test]
    fn host_processes_have_no_container() {
        assert_eq!(parse_cgroup_path("/user.slice/user-0.slice/session-1.scope"), Attribution::default());
        assert_eq!(parse_cgroup_path("/system.slice/kubelet.service"), Attribution::default());
        assert_eq!(parse_proc_cgroup("0::/\n"), Attribution::default());
    }

    #[test]
    fn proc_cgroup_v1_lines_are_searched() {
        let content = format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n0::/\n");
        assert_eq!(parse_proc_cgroup(&content).container_id.as_deref(), Some(ID));
    }
}
