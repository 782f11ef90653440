//! Fresh private directories under the temporary directory: a random name created with mode 0700 and refused if
//! it exists, so another local user can neither predict it nor put something there first (a binary root runs, a
//! token it reads).

use std::io::Read as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;

/// `count` random bytes as hex.
pub(crate) fn random_hex(count: usize) -> std::io::Result<String> {
    let mut random = vec![0u8; count];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates `<tmp>/<prefix>-<random>` with mode 0700.
pub(crate) fn create(prefix: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", random_hex(8)?));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn each_directory_is_new_and_private() {
        let (a, b) = (super::create("palisade-t").unwrap(), super::create("palisade-t").unwrap());
        assert_ne!(a, b);
        assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o700);
        let _ = (std::fs::remove_dir(a), std::fs::remove_dir(b));
    }
}
