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
    /// Below the container's own scope, the path names another pod or container: a process that can write
    /// cgroups made it (the runtime never does) to be taken for someone else. The first, outer one is kept.
    pub nested: bool,
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Container id and pod UID from one cgroup path: the first (outermost) of each, which the kubelet and the
/// runtime create. A pod's container that can write cgroups can nest `…/pod<uid>/cri-containerd-<id>.scope`
/// below its own scope to look like another pod; the outer names are still its own, and the nesting is flagged.
/// Two layouts nest legitimately: a Kubernetes node that is itself a container (kind, k3d, minikube's docker
/// driver: `docker-<node>.scope/kubelet.slice/…` or `/docker/<node>/kubepods/…`), where the inner pod is the
/// workload, and containers in a plain container (docker-in-docker, podman in a container), where the outer one
/// is. A host user's own cgroups (`/user.slice`, delegated to the user) name no container, whatever they say; a
/// `user.slice` a container made below its own scope is only a name it chose.
pub fn parse_cgroup_path(path: &str) -> Attribution {
    let mut attribution = Attribution::default();
    // `user.slice` first: in a private cgroup namespace the path is relative (`/../../user.slice/…`).
    if path.split('/').find(|segment| !segment.is_empty() && *segment != "..") == Some("user.slice") {
        return attribution;
    }
    for segment in path.split('/') {
        let segment = segment.strip_suffix(".scope").unwrap_or(segment);
        // cri-containerd-<id>, crio-<id>, docker-<id>, or a bare id (cgroupfs driver, v1 docker).
        let candidate = segment.rsplit(['-', ':']).next().unwrap_or(segment);
        let container = is_container_id(candidate).then_some(candidate);
        // kubepods-besteffort-pod<uid with _>.slice (systemd) or pod<uid> (cgroupfs).
        let slice = segment.strip_suffix(".slice").unwrap_or(segment);
        let pod = slice
            .rfind("pod")
            .map(|index| slice[index + 3..].replace('_', "-"))
            .filter(|uid| uid.len() == 36 && uid.bytes().filter(|b| *b == b'-').count() == 4);
        if attribution.container_id.is_some() {
            if attribution.pod_uid.is_some() {
                attribution.nested |= container.is_some() || pod.is_some();
            } else if segment.starts_with("kubepods") || segment.starts_with("kubelet") {
                // A node in a container: what follows is the node's own kubelet and pods.
                attribution = Attribution::default();
            }
            continue;
        }
        if let Some(id) = container {
            attribution.container_id = Some(id.to_owned());
        }
        if attribution.pod_uid.is_none() {
            attribution.pod_uid = pod;
        }
    }
    attribution
}

/// `/proc/<pid>/cgroup` content as (the v2 path, its attribution, the attribution of the first v1 line naming a
/// container). The v2 line wins when it names a container, else a v1 line naming one (see `attribute_with`).
fn split_proc_cgroup(content: &str) -> (&str, Attribution, Option<Attribution>) {
    let mut unified = ("", Attribution::default());
    let mut legacy = None;
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (hierarchy, path) = (parts.next().unwrap_or_default(), parts.nth(1).unwrap_or_default());
        let attribution = parse_cgroup_path(path);
        if hierarchy == "0" {
            unified = (path, attribution);
        } else if legacy.is_none() && attribution.container_id.is_some() {
            legacy = Some(attribution);
        }
    }
    (unified.0, unified.1, legacy)
}

/// Most entries of each cache; a full cache is emptied (each container or process is then resolved once more).
const CACHE_MAX_ENTRIES: usize = 65_536;

/// Resolves cgroup ids to attributions, caching the answers. A v2 cgroup that names a container answers for
/// every process in it. Any other answer is kept per process (and its v2 cgroup), because on cgroup v1 and
/// hybrid hosts with the cgroupfs driver a container's processes share a v2 cgroup with host processes and only
/// their v1 cgroups name the container.
pub struct CgroupResolver {
    root: Option<PathBuf>,
    /// v2 cgroup id → what its path says; authoritative when it names a container, else only the answer for a
    /// process that is gone before its `/proc` entry was read.
    by_cgroup: DashMap<u64, Attribution>,
    /// process → (the v2 cgroup id it was resolved in, its attribution); forgotten at the process's exit.
    by_process: DashMap<u32, (u64, Attribution)>,
    /// cgroup v2 only (no v1 hierarchies): the v2 cgroup is the whole answer, so every answer is kept by id and
    /// a process in a known cgroup costs no `/proc` read.
    unified_only: bool,
    /// The v2 mount is the hierarchy's root (its directory is cgroup 1), so paths the kernel reports from the
    /// root read as the mount's do.
    sees_hierarchy_root: bool,
}

impl CgroupResolver {
    /// `root` is the cgroup v2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
    pub fn new() -> Self {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.procs").exists());
        let unified_only = root.as_deref() == Some(std::path::Path::new("/sys/fs/cgroup"));
        let sees_hierarchy_root =
            root.as_ref().and_then(|root| std::fs::metadata(root).ok()).is_some_and(|m| m.ino() == 1);
        Self { root, by_cgroup: DashMap::new(), by_process: DashMap::new(), unified_only, sees_hierarchy_root }
    }

    /// Attribution for a process: from its `/proc` entry while it lives, else from the cgroup id.
    pub fn attribute(&self, pid: u32, cgroup_id: u64) -> Attribution {
        self.attribute_with(
            pid,
            cgroup_id,
            |pid| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok(),
            |path| {
                let root = self.root.as_ref()?;
                std::fs::metadata(root.join(path.trim_start_matches('/'))).ok().map(|m| m.ino())
            },
        )
    }

    /// `read_proc` gives a process's `/proc/<pid>/cgroup`, `inode_of` the id of a v2 cgroup path (`None`: unknown).
    fn attribute_with(
        &self,
        pid: u32,
        cgroup_id: u64,
        read_proc: impl FnOnce(u32) -> Option<String>,
        inode_of: impl FnOnce(&str) -> Option<u64>,
    ) -> Attribution {
        if let Some(known) = self.by_process.get(&pid)
            && known.0 == cgroup_id
        {
            return known.1.clone();
        }
        let cached = self.by_cgroup.get(&cgroup_id).map(|entry| entry.clone());
        if let Some(attribution) = &cached
            && (attribution.container_id.is_some() || self.unified_only)
        {
            return attribution.clone();
        }
        let content = read_proc(pid);
        let parts = content.as_deref().map(split_proc_cgroup);
        // `/proc` is read after the event: a process that moved since (a shell that puts itself into a container's
        // cgroup, then execs) shows where it is now, not where the event happened. Only the cgroup id says that.
        let moved = parts.as_ref().is_some_and(|(path, ..)| inode_of(path).is_some_and(|inode| inode != cgroup_id));
        let Some((_, unified, legacy)) = parts.filter(|_| !moved) else {
            // Gone, or moved: the event's v2 cgroup is all there is to go by.
            if let Some(attribution) = cached {
                return attribution;
            }
            let attribution = self.find_by_id(cgroup_id).map(|p| parse_cgroup_path(&p)).unwrap_or_default();
            remember(&self.by_cgroup, cgroup_id, attribution.clone());
            return attribution;
        };
        if unified.container_id.is_some() {
            remember(&self.by_cgroup, cgroup_id, unified.clone());
            return unified;
        }
        let attribution = legacy.unwrap_or_else(|| unified.clone());
        remember(&self.by_process, pid, (cgroup_id, attribution.clone()));
        if cached.is_none() {
            remember(&self.by_cgroup, cgroup_id, unified);
        }
        attribution
    }

    /// A v2 cgroup the kernel reported created, with its path: one that names a container answers for its id from
    /// then on, so a container whose process exited and whose cgroup was removed before its events are read is
    /// still attributed. Any other path is left to the per-process answer (`attribute`).
    pub fn learn(&self, cgroup_id: u64, path: &str) {
        // The kernel's path is from the hierarchy's root; `/proc` and the tree search see the collector's own view
        // of it. Where that view is a subtree (a node in a container, a private cgroup namespace's mount) the two
        // differ, and the lookups are left to decide.
        if !self.sees_hierarchy_root {
            return;
        }
        let attribution = parse_cgroup_path(path);
        if attribution.container_id.is_some() {
            remember(&self.by_cgroup, cgroup_id, attribution);
        }
    }

    /// A cgroup removed: it is empty and no later event can carry its id.
    pub fn forget_cgroup(&self, cgroup_id: u64) {
        self.by_cgroup.remove(&cgroup_id);
    }

    /// Drops what is kept of an exited process.
    pub fn forget(&self, pid: u32) {
        self.by_process.remove(&pid);
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

fn remember<K: std::hash::Hash + Eq, V>(cache: &DashMap<K, V>, key: K, value: V) {
    if cache.len() >= CACHE_MAX_ENTRIES {
        cache.clear();
    }
    cache.insert(key, value);
}

impl Default for CgroupResolver {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver with empty caches and no cgroup mount (tests give `/proc` contents and inodes themselves).
    fn resolver(unified_only: bool) -> CgroupResolver {
        CgroupResolver {
            root: None,
            by_cgroup: DashMap::new(),
            by_process: DashMap::new(),
            unified_only,
            sees_hierarchy_root: true,
        }
    }

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

    /// A path nested below a container's scope to name another pod and container keeps the outer identity.
    #[test]
    fn a_nested_cgroup_cannot_borrow_another_pods_identity() {
        let victim = "9".repeat(64);
        let own = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d9a2f4e_1111_2222_3333_444455556666.slice/cri-containerd-{ID}.scope"
        );
        for nested in [
            format!(
                "{own}/kubepods-besteffort-podaaaaaaaa_bbbb_cccc_dddd_eeeeeeeeeeee.slice/cri-containerd-{victim}.scope"
            ),
            format!("{own}/x/podaaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/{victim}"),
            format!("{own}/docker-{victim}.scope"),
        ] {
            let a = parse_cgroup_path(&nested);
            assert_eq!(a.container_id.as_deref(), Some(ID), "{nested}");
            assert_eq!(a.pod_uid.as_deref(), Some("0d9a2f4e-1111-2222-3333-444455556666"), "{nested}");
            assert!(a.nested, "{nested}");
        }
        // A container's own sub-cgroups (systemd in a container, an init's helpers) are not nesting.
        assert!(!parse_cgroup_path(&format!("{own}/init.scope")).nested);
        assert!(!parse_cgroup_path(&own).nested);
        // The cgroupfs layout names the pod before the container: both are the outer ones.
        let cgroupfs = parse_cgroup_path(&format!("/kubepods/burstable/pod0d9a2f4e-1111-2222-3333-444455556666/{ID}"));
        assert!(!cgroupfs.nested);
    }

    /// Nodes that are containers (kind, k3d) attribute to the inner pod; containers in a plain container keep the
    /// outer one without a flag; a host user's delegated cgroups name nothing.
    #[test]
    fn legitimate_nesting_and_user_cgroups() {
        let inner = "7".repeat(64);
        let kind = format!(
            "/system.slice/docker-{ID}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod0d9a2f4e_1111_2222_3333_444455556666.slice/cri-containerd-{inner}.scope"
        );
        let a = parse_cgroup_path(&kind);
        assert_eq!(a.container_id.as_deref(), Some(inner.as_str()));
        assert_eq!(a.pod_uid.as_deref(), Some("0d9a2f4e-1111-2222-3333-444455556666"));
        assert!(!a.nested);
        let v1_kind = parse_cgroup_path(&format!(
            "/docker/{ID}/kubepods/besteffort/pod0d9a2f4e-1111-2222-3333-444455556666/{inner}"
        ));
        assert_eq!(v1_kind.container_id.as_deref(), Some(inner.as_str()));
        let dind = parse_cgroup_path(&format!("/system.slice/docker-{ID}.scope/docker/{inner}"));
        assert_eq!((dind.container_id.as_deref(), dind.nested), (Some(ID), false));
        // A host user with a delegated cgroup tree makes one that looks like a pod's.
        let user = format!(
            "/user.slice/user-1000.slice/user@1000.service/kubepods-besteffort-pod0d9a2f4e_1111_2222_3333_444455556666.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse_cgroup_path(&user), Attribution::default());
        // As a collector in its own cgroup namespace reads it.
        assert_eq!(parse_cgroup_path(&format!("/../../..{user}")), Attribution::default());
    }

    #[test]
    fn host_processes_have_no_container() {
        assert_eq!(parse_cgroup_path("/user.slice/user-0.slice/session-1.scope"), Attribution::default());
        assert_eq!(parse_cgroup_path("/system.slice/kubelet.service"), Attribution::default());
        assert_eq!(
            resolver(false).attribute_with(1, 1, |_| Some("0::/\n".into()), |_| Some(1)),
            Attribution::default()
        );
    }

    /// On a hybrid host with the cgroupfs driver a container's processes share the root v2 cgroup (id 1) with host
    /// processes: a host process seen first must not make the container's processes host processes, nor the
    /// other way round.
    #[test]
    fn containers_known_only_by_v1_cgroups_are_answered_per_process() {
        let resolver = resolver(false);
        // v2 cgroup ids: the root is 1, the container scope 77 (5 is where process 10 moved).
        let inode = |path: &str| match path {
            "/" => Some(1),
            p if p.starts_with("/kubepods.slice/") => Some(if p.contains("moved") { 5 } else { 77 }),
            _ => None,
        };
        let host = "4:memory:/user.slice\n0::/\n".to_owned();
        let container = format!("4:memory:/kubepods/besteffort/pod0d9a2f4e-1111-2222-3333-444455556666/{ID}\n0::/\n");
        assert_eq!(resolver.attribute_with(10, 1, |_| Some(host.clone()), inode), Attribution::default());
        let inside = resolver.attribute_with(20, 1, |_| Some(container.clone()), inode);
        assert_eq!(inside.container_id.as_deref(), Some(ID));
        assert_eq!(inside.pod_uid.as_deref(), Some("0d9a2f4e-1111-2222-3333-444455556666"));
        // Later events of the container process come from the per-process cache, without /proc.
        assert_eq!(resolver.attribute_with(20, 1, |_| None, inode).container_id.as_deref(), Some(ID));
        // The host process keeps its own answer; a new host process reads its own /proc entry.
        assert_eq!(resolver.attribute_with(10, 1, |_| None, inode), Attribution::default());
        assert_eq!(resolver.attribute_with(11, 1, |_| Some(host.clone()), inode), Attribution::default());
        assert_eq!(
            resolver.attribute_with(21, 1, |_| Some(container.clone()), inode).container_id.as_deref(),
            Some(ID)
        );
        resolver.forget(20);
        assert!(resolver.by_process.get(&20).is_none());
        // A process that moved to another v2 cgroup (as runc moves its init) is resolved again.
        let moved = format!("0::/kubepods.slice/moved/cri-containerd-{ID}.scope\n");
        assert_eq!(resolver.attribute_with(10, 5, |_| Some(moved.clone()), inode).container_id.as_deref(), Some(ID));
        // A container with its own v2 cgroup is cached by that id, even for a process already gone.
        let v2 = format!("0::/kubepods.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(resolver.attribute_with(30, 77, |_| Some(v2), inode).container_id.as_deref(), Some(ID));
        assert_eq!(resolver.attribute_with(31, 77, |_| None, inode).container_id.as_deref(), Some(ID));
    }

    /// A shell that moves itself into a container's cgroup and then execs: its earlier event (in the host's root
    /// cgroup) is read from `/proc` only after the move. That answer must not be taken for the root cgroup.
    #[test]
    fn a_process_that_moved_after_its_event_does_not_make_the_old_cgroup_a_container() {
        let resolver = resolver(false);
        let inode = |path: &str| if path == "/" { Some(1) } else { Some(405) };
        let now_in_container = format!("0::/kubepods.slice/cri-containerd-{ID}.scope\n");
        // The event happened in cgroup 1; by the time /proc is read the process is in 405.
        assert_eq!(resolver.attribute_with(40, 1, |_| Some(now_in_container.clone()), inode), Attribution::default());
        assert_eq!(
            resolver.attribute_with(41, 1, |_| Some("0::/\n".into()), inode),
            Attribution::default(),
            "the root cgroup still means the host"
        );
        assert_eq!(
            resolver.attribute_with(40, 405, |_| Some(now_in_container.clone()), inode).container_id.as_deref(),
            Some(ID)
        );
    }

    #[test]
    fn on_a_unified_only_host_a_known_cgroup_answers_without_proc() {
        let resolver = resolver(true);
        let inode = |_: &str| Some(9);
        assert_eq!(resolver.attribute_with(50, 9, |_| Some("0::/user.slice\n".into()), inode), Attribution::default());
        let unread = resolver.attribute_with(51, 9, |_| panic!("no /proc read for a known cgroup"), inode);
        assert_eq!(unread, Attribution::default());
    }

    /// A container with a writable cgroup file system that makes `user.slice` below its own scope and moves there
    /// is still that container; only a path that starts with it is a host user's.
    #[test]
    fn a_user_slice_below_a_containers_scope_does_not_hide_it() {
        let path = format!("/kubepods/besteffort/pod0d9a2f4e-1111-2222-3333-444455556666/{ID}/user.slice");
        assert_eq!(parse_cgroup_path(&path).container_id.as_deref(), Some(ID));
        assert_eq!(parse_cgroup_path("/../../user.slice/user-0.slice/session-1.scope"), Attribution::default());
    }

    /// A cgroup learned at its creation answers for a process already gone, with no `/proc` read and no search;
    /// a path that names no container teaches nothing, and a nested one keeps its outer owner.
    #[test]
    fn a_cgroup_learned_at_its_creation_answers_once_it_is_gone() {
        let resolver = resolver(false);
        let gone = |_: u32| None;
        let no_inode = |_: &str| None;
        resolver.learn(60, &format!("/kubepods/besteffort/pod0d9a2f4e-1111-2222-3333-444455556666/{ID}"));
        let attribution = resolver.attribute_with(70, 60, gone, no_inode);
        assert_eq!(attribution.container_id.as_deref(), Some(ID));
        assert_eq!(attribution.pod_uid.as_deref(), Some("0d9a2f4e-1111-2222-3333-444455556666"));
        resolver.learn(61, "/system.slice/cron.service");
        assert!(resolver.by_cgroup.get(&61).is_none(), "a host cgroup is not kept by id on a hybrid host");
        let other = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
        resolver.learn(62, &format!("/kubepods/pod0d9a2f4e-1111-2222-3333-444455556666/{ID}/kubepods/podx/{other}"));
        let nested = resolver.attribute_with(71, 62, gone, no_inode);
        assert_eq!((nested.container_id.as_deref(), nested.nested), (Some(ID), true));
        // Removed: forgotten (no later event can carry its id), so a create-and-remove loop keeps nothing.
        resolver.forget_cgroup(60);
        assert!(resolver.by_cgroup.get(&60).is_none());
        // A collector whose cgroup mount is a subtree learns nothing: its lookups read paths another way.
        let mut subtree = super::tests::resolver(false);
        subtree.sees_hierarchy_root = false;
        subtree.learn(63, &format!("/kubepods/pod0d9a2f4e-1111-2222-3333-444455556666/{ID}"));
        assert!(subtree.by_cgroup.get(&63).is_none());
    }

    #[test]
    fn proc_cgroup_v1_lines_are_searched() {
        let content = format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n0::/\n");
        let attribution = resolver(false).attribute_with(1, 1, |_| Some(content), |_| Some(1));
        assert_eq!(attribution.container_id.as_deref(), Some(ID));
    }
}
