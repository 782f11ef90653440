//! Lists shipped with the product as data files (`detect/data/*.txt`, one entry per line, `#` comments, each
//! file saying where its entries come from).

use std::sync::LazyLock;

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
    fn lists_load_without_comments() {
        assert!(MINER_IMAGES.contains(&"xmrig".to_owned()));
        assert!(SENSITIVE_HOST_PATHS.iter().all(|p| p.starts_with('/')));
    }
}
