//! Lists shipped with the product as data files (`detect/data/*.txt`, one entry per line, `#` comments, each
//! file saying where its entries come from), and the one way any list is re-read at run time: `Reloading`.

use std::collections::HashSet;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// A list read from the text of one file.
pub trait ListText: Sized {
    fn parse(text: &str) -> Result<Self, String>;
}

/// How a reloading list is read from its path.
type Load<L> = Box<dyn Fn(&Path) -> Result<L, String> + Send + Sync>;

/// Where a reloading list comes from: a file or a directory, the files whose modification times say it changed,
/// and how it is read.
struct Source<L> {
    /// The `list` label of its metrics and logs.
    name: String,
    path: PathBuf,
    watched: Vec<PathBuf>,
    load: Load<L>,
}

struct Check {
    at: Instant,
    stamps: Vec<Option<SystemTime>>,
    /// The failure last logged, so a file that stays broken is logged once (and counted at every change).
    logged: Option<String>,
}

/// A list re-read (at most every `check_every`) when one of the files it comes from changes (appears, vanishes or
/// is modified). A source that stops loading keeps the last good list; the failure is counted at every change
/// (`palisade_detect_list_reload_failures_total`) and logged once until it changes. Proxy addresses, the node
/// lists, the control-plane lists, suppression rules and threat-intelligence feeds all reload through it.
pub struct Reloading<L> {
    current: RwLock<Arc<L>>,
    /// The list of a `fixed` instance: handed out without taking the lock (most runs use the shipped lists).
    fixed: Option<Arc<L>>,
    source: Option<Source<L>>,
    check_every: Duration,
    check: Mutex<Check>,
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths.iter().map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok()).collect()
}

impl<L> Reloading<L> {
    /// A list that never changes.
    pub fn fixed(list: L) -> Self {
        let list = Arc::new(list);
        let check = Check { at: Instant::now(), stamps: Vec::new(), logged: None };
        Self {
            current: RwLock::new(Arc::clone(&list)),
            fixed: Some(list),
            source: None,
            check_every: Duration::MAX,
            check: Mutex::new(check),
        }
    }

    /// The list `load` reads from `path`, re-read when a file of `watched` changes; `name` labels its metrics and
    /// logs. Fails when the first load does: a start-up with a broken list is refused, not run with an empty one.
    pub fn from_source(
        name: &str,
        path: &Path,
        watched: Vec<PathBuf>,
        check_every: Duration,
        load: impl Fn(&Path) -> Result<L, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let list = load(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let check = Check { at: Instant::now(), stamps: stamps(&watched), logged: None };
        let source = Source { name: name.to_owned(), path: path.to_owned(), watched, load: Box::new(load) };
        let current = RwLock::new(Arc::new(list));
        Ok(Self { current, fixed: None, source: Some(source), check_every, check: Mutex::new(check) })
    }

    /// The current list, re-read first when a check is due and a file changed.
    pub fn current(&self) -> Arc<L> {
        if let Some(fixed) = &self.fixed {
            return Arc::clone(fixed);
        }
        self.reload_if_changed();
        self.current.read().map(|current| Arc::clone(&current)).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Runs `read` on the current list.
    pub fn with<T>(&self, read: impl FnOnce(&L) -> T) -> Option<T> {
        Some(read(&self.current()))
    }

    fn reload_if_changed(&self) {
        let Some(source) = &self.source else { return };
        // One caller checks; the others go on with the list they have.
        let mut check = match self.check.try_lock() {
            Ok(check) => check,
            // A panic elsewhere while holding it leaves a usable `Check`: keep reloading.
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if check.at.elapsed() < self.check_every {
            return;
        }
        check.at = Instant::now();
        let now = stamps(&source.watched);
        if now == check.stamps {
            return;
        }
        check.stamps = now;
        let list = source.name.as_str();
        match (source.load)(&source.path) {
            Ok(loaded) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(loaded);
                }
                check.logged = None;
                palisade_telemetry::ListReloaded { list, source: &source.path.display().to_string() }.emit();
            }
            Err(error) => {
                let first = check.logged.as_deref() != Some(error.as_str());
                let from = source.path.display().to_string();
                palisade_telemetry::ListReloadFailed { list, source: &from, error: &error, log: first }.emit();
                check.logged = Some(error);
            }
        }
    }
}

impl<L: ListText> Reloading<L> {
    /// A list read from one file, named after the file.
    pub fn from_file(path: &Path, check_every: Duration) -> Result<Self, String> {
        let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| L::parse(&t));
        let name = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
        Self::from_source(&name, path, vec![path.to_owned()], check_every, read)
    }
}

/// Lists this short are scanned rather than hashed.
const SCAN_AT_MOST: usize = 12;

/// A list of names in file order, with a hash set for membership: rules ask "is this name listed?" for every
/// exec, and a scan of the list costs one comparison per entry. Most names asked about are not listed; their
/// length or first byte already says so, without hashing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    entries: Vec<String>,
    set: HashSet<String>,
    /// Bit `n` set: an entry is `n` bytes long (bit 63: 63 or longer).
    lengths: u64,
    /// Bit `b` set: an entry starts with byte `b`.
    first_bytes: [u64; 4],
}

impl Names {
    pub fn new(entries: Vec<String>) -> Self {
        let mut lengths = 0;
        let mut first_bytes = [0; 4];
        for entry in &entries {
            lengths |= 1 << entry.len().min(63);
            if let Some(&byte) = entry.as_bytes().first() {
                first_bytes[usize::from(byte / 64)] |= 1 << (byte % 64);
            }
        }
        let set = entries.iter().cloned().collect();
        Self { entries, set, lengths, first_bytes }
    }

    /// `name` is an entry (exactly).
    pub fn contains(&self, name: &str) -> bool {
        let Some(&byte) = name.as_bytes().first() else { return self.set.contains(name) };
        if self.lengths & (1 << name.len().min(63)) == 0
            || self.first_bytes[usize::from(byte / 64)] & (1 << (byte % 64)) == 0
        {
            return false;
        }
        // A few entries compare faster than one hash.
        if self.entries.len() <= SCAN_AT_MOST {
            return self.entries.iter().any(|entry| entry == name);
        }
        self.set.contains(name)
    }
}

impl<const N: usize> PartialEq<[&str; N]> for Names {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.entries.iter().map(String::as_str).eq(other.iter().copied())
    }
}

impl Deref for Names {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.entries
    }
}

/// Entries of a shipped list file: one per line, blank lines and `#` comments skipped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
}

/// (file name, shipped text) of the control-plane units' lists.
const AUDIT_SHIPPED: [(&str, &str); 3] = [
    ("miner_images.txt", include_str!("../data/miner_images.txt")),
    ("sensitive_host_paths.txt", include_str!("../data/sensitive_host_paths.txt")),
    ("kube_system_workloads.txt", include_str!("../data/kube_system_workloads.txt")),
];

/// The control-plane units' lists, shipped in `detect/data/`; a file of the same name in `detect.lists_dir`
/// replaces its shipped twin and is re-read when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLists {
    /// Image repository names of miners (K8S_MaliciousContainerImage), lower-cased.
    pub miner_images: Vec<String>,
    /// Host paths whose mount is sensitive (K8S_SensitiveMount).
    pub sensitive_host_paths: Vec<String>,
    /// The kube-system allow-list's lines (K8S_KubeSystemContainer; parsed by that unit).
    pub kube_system_workloads: Vec<String>,
}

impl AuditLists {
    pub fn shipped() -> Self {
        Self::from_texts(|_| None).expect("shipped lists need no files")
    }

    /// The shipped lists with every file present in `dir` taking the place of its shipped twin.
    pub fn from_dir(dir: &Path) -> Result<Self, String> {
        Self::from_texts(|name| {
            let path = dir.join(name);
            path.exists().then(|| std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}")))
        })
    }

    fn from_texts(mut text: impl FnMut(&str) -> Option<Result<String, String>>) -> Result<Self, String> {
        let mut lists = Vec::with_capacity(AUDIT_SHIPPED.len());
        for (name, shipped) in AUDIT_SHIPPED {
            lists.push(match text(name) {
                Some(text) => parse_list(&text?),
                None => parse_list(shipped),
            });
        }
        let [miner_images, sensitive_host_paths, kube_system_workloads] =
            <[Vec<String>; 3]>::try_from(lists).expect("three lists");
        Ok(Self {
            miner_images: miner_images.into_iter().map(|s| s.to_lowercase()).collect(),
            sensitive_host_paths,
            kube_system_workloads,
        })
    }
}

/// The control-plane lists every unit shares; cheap to clone.
pub type SharedAuditLists = Arc<Reloading<AuditLists>>;

/// The control-plane lists: from `dir` (re-read at most every `check_every`) or the shipped ones.
pub fn audit_lists(dir: Option<&Path>, check_every: Duration) -> Result<SharedAuditLists, String> {
    Ok(Arc::new(match dir {
        Some(dir) => {
            let watched = AUDIT_SHIPPED.iter().map(|(name, _)| dir.join(name)).collect();
            Reloading::from_source("lists", dir, watched, check_every, AuditLists::from_dir)?
        }
        None => Reloading::fixed(AuditLists::shipped()),
    }))
}

/// The shipped control-plane lists.
pub static SHIPPED_AUDIT: LazyLock<AuditLists> = LazyLock::new(AuditLists::shipped);

/// The shipped control-plane lists as a shared handle, for units built without a configuration.
pub static SHIPPED_AUDIT_LISTS: LazyLock<SharedAuditLists> =
    LazyLock::new(|| Arc::new(Reloading::fixed(SHIPPED_AUDIT.clone())));

/// Repository name of an image reference without registry, tag or digest: `ghcr.io/a/xmrig:6.21@sha256:..` →
/// `a/xmrig`.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let without_tag = match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    match without_tag.split_once('/') {
        // The first component is a registry when it looks like a host.
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => rest,
        _ => without_tag,
    }
}

/// An image reference's full name without tag or digest, with Docker Hub's implicit parts written out:
/// `nginx:1.27` → `docker.io/library/nginx`, `calico/node:v3` → `docker.io/calico/node`,
/// `registry.k8s.io/kube-proxy:v1.31@sha256:..` → `registry.k8s.io/kube-proxy`. The registry is kept: the same
/// repository path under another registry is another image.
pub fn image_name(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let without_tag = match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    // The first component names a registry the way the runtimes' reference parser decides it: a dot, a port, or
    // `localhost`, or (before any lower-casing) an upper-case letter: `Calico/node` is pulled from host `Calico`.
    match without_tag.split_once('/') {
        Some((first, _))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            let name = without_tag.to_ascii_lowercase();
            match name.strip_prefix("index.docker.io/") {
                Some(rest) => format!("docker.io/{rest}"),
                None => name,
            }
        }
        Some(_) => format!("docker.io/{}", without_tag.to_ascii_lowercase()),
        None => format!("docker.io/library/{}", without_tag.to_ascii_lowercase()),
    }
}

/// Glob match: `**` matches any text, `*` any text without `/`, everything else itself. Dynamic programming over
/// (pattern, text) positions, so the time is bounded by their product whatever the stars.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    // matched[t]: the pattern read so far matches text[..t].
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    let mut p = 0;
    while p < pattern.len() {
        let mut next = vec![false; text.len() + 1];
        if pattern[p] == b'*' {
            let crosses = pattern.get(p + 1) == Some(&b'*');
            for t in 0..=text.len() {
                next[t] = matched[t] || (t > 0 && next[t - 1] && (crosses || text[t - 1] != b'/'));
            }
            p += if crosses { 2 } else { 1 };
        } else {
            for t in 1..=text.len() {
                next[t] = matched[t - 1] && text[t - 1] == pattern[p];
            }
            p += 1;
        }
        matched = next;
    }
    matched[text.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_drop_registry_tag_and_digest() {
        assert_eq!(image_repository("xmrig"), "xmrig");
        assert_eq!(image_repository("metal3d/xmrig:latest"), "metal3d/xmrig");
        assert_eq!(image_repository("ghcr.io/evil/xmrig:6.21@sha256:abcd"), "evil/xmrig");
        assert_eq!(image_repository("registry.local:5000/xmrig"), "xmrig");
        assert_eq!(image_repository("nginx@sha256:abcd"), "nginx");
    }

    #[test]
    fn image_names_keep_the_registry() {
        assert_eq!(image_name("nginx:1.27"), "docker.io/library/nginx");
        assert_eq!(image_name("calico/node:v3.28"), "docker.io/calico/node");
        assert_eq!(image_name("registry.k8s.io/kube-proxy:v1.31.0@sha256:ab"), "registry.k8s.io/kube-proxy");
        assert_eq!(image_name("localhost:5000/kube-proxy"), "localhost:5000/kube-proxy");
        assert_eq!(image_name("index.docker.io/calico/node"), "docker.io/calico/node");
        assert_eq!(image_name("Quay.io/Cilium/cilium:v1"), "quay.io/cilium/cilium");
        // An upper-case first component is a registry host to the runtimes, not a Docker Hub namespace.
        assert_eq!(image_name("Calico/node:v3"), "calico/node");
        assert_eq!(image_name("evil.io/index.docker.io/calico/node"), "evil.io/index.docker.io/calico/node");
    }

    #[test]
    fn globs_keep_single_stars_inside_one_path_component() {
        assert!(glob_matches("etcd-*", "etcd-node-1"));
        assert!(glob_matches("registry.k8s.io/kube-proxy", "registry.k8s.io/kube-proxy"));
        assert!(!glob_matches("registry.k8s.io/kube-proxy", "registry.k8s.io/kube-proxy-evil"));
        assert!(glob_matches(
            "602401143452.dkr.ecr.*.amazonaws.com/eks/*",
            "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/coredns"
        ));
        assert!(!glob_matches(
            "602401143452.dkr.ecr.*.amazonaws.com/eks/*",
            "602401143452.dkr.ecr.evil.io/x.amazonaws.com/eks/coredns"
        ));
        assert!(!glob_matches("gke.gcr.io/*", "gke.gcr.io/evil/miner"));
        assert!(glob_matches("mcr.microsoft.com/**", "mcr.microsoft.com/oss/kubernetes/kube-proxy"));
        assert!(!glob_matches("mcr.microsoft.com/**", "mcr.microsoft.com.evil.io/kube-proxy"));
        assert!(glob_matches("*", "anything-at-all"));
        assert!(!glob_matches("a*b", "a/b"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
    }

    #[test]
    fn lists_load_without_comments() {
        let shipped = AuditLists::shipped();
        assert!(shipped.miner_images.contains(&"xmrig".to_owned()));
        assert!(shipped.sensitive_host_paths.iter().all(|p| p.starts_with('/')));
    }

    #[test]
    fn control_plane_lists_in_a_directory_replace_the_shipped_ones_and_reload() {
        let dir = std::env::temp_dir().join(format!("palisade-audit-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("miner_images.txt"), "# ours\nOurMiner\n").unwrap();
        let lists = audit_lists(Some(&dir), Duration::ZERO).unwrap();
        assert_eq!(lists.current().miner_images, ["ourminer"], "replaced, lower-cased");
        assert_eq!(lists.current().sensitive_host_paths, AuditLists::shipped().sensitive_host_paths, "others shipped");
        std::fs::write(dir.join("sensitive_host_paths.txt"), "/srv/secrets\n").unwrap();
        let file = std::fs::File::options().write(true).open(dir.join("sensitive_host_paths.txt")).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(10)).unwrap();
        assert_eq!(lists.current().sensitive_host_paths, ["/srv/secrets"], "a new file is a change");
        std::fs::remove_file(dir.join("miner_images.txt")).unwrap();
        assert!(
            lists.current().miner_images.contains(&"xmrig".to_owned()),
            "a removed file gives the shipped list back"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod reloading_tests {
    use super::*;

    struct Words(Vec<String>);

    impl ListText for Words {
        fn parse(text: &str) -> Result<Self, String> {
            let words = parse_list(text);
            match words.iter().find(|word| word.contains(' ')) {
                Some(bad) => Err(format!("`{bad}` is not one word")),
                None => Ok(Words(words)),
            }
        }
    }

    /// Sets a modification time the file system cannot have given before (coarse clocks give equal ones).
    fn touch(path: &Path, seconds_ahead: u64) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(seconds_ahead)).unwrap();
    }

    #[test]
    fn a_list_reloads_on_change_and_a_broken_file_keeps_the_last_good_list_counted_each_time() {
        let dir = std::env::temp_dir().join(format!("palisade-reloading-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("reload_test_words.txt");
        std::fs::write(&path, "alpha\n").unwrap();
        let list = Reloading::<Words>::from_file(&path, Duration::ZERO).unwrap();
        assert_eq!(list.current().0, ["alpha"]);
        let failures = || palisade_telemetry::ListReloadFailed::count("reload_test_words");
        let before = failures();

        std::fs::write(&path, "beta\n").unwrap();
        touch(&path, 10);
        assert_eq!(list.current().0, ["beta"], "reloaded without a restart");

        std::fs::write(&path, "two words\n").unwrap();
        touch(&path, 20);
        assert_eq!(list.current().0, ["beta"], "a broken file keeps the last good list");
        assert_eq!(failures(), before + 1);
        assert_eq!(list.current().0, ["beta"]);
        assert_eq!(failures(), before + 1, "counted per change, not per look");

        std::fs::write(&path, "still broken\n").unwrap();
        touch(&path, 30);
        list.current();
        assert_eq!(failures(), before + 2);

        std::fs::remove_file(&path).unwrap();
        assert_eq!(list.current().0, ["beta"], "a vanished file is a change that does not load");
        assert_eq!(failures(), before + 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_list_that_does_not_load_at_start_is_refused() {
        let missing = std::env::temp_dir().join("palisade-no-such-list.txt");
        let error = Reloading::<Words>::from_file(&missing, Duration::ZERO).err().unwrap();
        assert!(error.starts_with(&missing.display().to_string()), "{error}");
    }

    #[test]
    fn names_are_found_exactly_whatever_their_length_or_first_byte() {
        let long = "x".repeat(80);
        let mut entries: Vec<String> = vec!["xmrig".into(), "".into(), long.clone(), "é-tool".into()];
        let short = Names::new(entries.clone());
        entries.extend((0..super::SCAN_AT_MOST).map(|n| format!("filler-{n}")));
        let names = Names::new(entries);
        for names in [&short, &names] {
            for listed in ["xmrig", "", long.as_str(), "é-tool"] {
                assert!(names.contains(listed), "{listed:?}");
            }
            for other in ["xmri", "xmrigs", "Xmrig", "ymrig", &"x".repeat(81), "é"] {
                assert!(!names.contains(other), "{other:?}");
            }
        }
        assert_eq!(&names[..2], ["xmrig", ""]);
    }
}
