//! Lists shipped with the product as data files (`detect/data/*.txt`, one entry per line, `#` comments, each
//! file saying where its entries come from).

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::LazyLock;

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
        self.lengths & (1 << name.len().min(63)) != 0
            && self.first_bytes[usize::from(byte / 64)] & (1 << (byte % 64)) != 0
            && self.set.contains(name)
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

pub static MINER_IMAGES: LazyLock<Vec<String>> = LazyLock::new(|| {
    parse_list(include_str!("../data/miner_images.txt")).into_iter().map(|s| s.to_lowercase()).collect()
});

pub static SENSITIVE_HOST_PATHS: LazyLock<Vec<String>> =
    LazyLock::new(|| parse_list(include_str!("../data/sensitive_host_paths.txt")));

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
        assert!(MINER_IMAGES.contains(&"xmrig".to_owned()));
        assert!(SENSITIVE_HOST_PATHS.iter().all(|p| p.starts_with('/')));
    }
}

#[cfg(test)]
mod names_tests {
    use super::Names;

    #[test]
    fn names_are_found_exactly_whatever_their_length_or_first_byte() {
        let long = "x".repeat(80);
        let names = Names::new(vec!["xmrig".into(), "".into(), long.clone(), "é-tool".into()]);
        for listed in ["xmrig", "", long.as_str(), "é-tool"] {
            assert!(names.contains(listed), "{listed:?}");
        }
        for other in ["xmri", "xmrigs", "Xmrig", "ymrig", &"x".repeat(81), "é"] {
            assert!(!names.contains(other), "{other:?}");
        }
        assert_eq!(&names[..2], ["xmrig", ""]);
    }
}
