//! IP address lists (addresses and CIDR ranges) read from files; reloaded through `crate::lists::Reloading`.

use std::net::IpAddr;

pub use crate::lists::{ListText, Reloading};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    network: IpAddr,
    prefix: u8,
}

fn bits(address: IpAddr) -> (u128, u8) {
    match address {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

impl Range {
    fn contains(&self, address: IpAddr) -> bool {
        let ((network, width), (candidate, candidate_width)) = (bits(self.network), bits(address));
        if width != candidate_width {
            return false;
        }
        let shift = u32::from(width - self.prefix.min(width));
        shift >= 128 || (network >> shift) == (candidate >> shift)
    }
}

/// A parsed list; lines that do not parse are reported, not silently taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpList {
    ranges: Vec<Range>,
}

impl IpList {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (address, prefix) = match line.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (line, None),
            };
            let network: IpAddr =
                address.parse().map_err(|_| format!("line {}: `{line}` is not an address", number + 1))?;
            let width = bits(network).1;
            let prefix = match prefix {
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= width)
                    .ok_or_else(|| format!("line {}: `{line}` has a bad prefix length", number + 1))?,
                None => width,
            };
            ranges.push(Range { network, prefix });
        }
        Ok(Self { ranges })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        self.ranges.iter().any(|range| range.contains(address))
    }

    /// The first entry that holds `address`, written as it is listed (`a.b.c.d` or `network/prefix`).
    pub fn matching(&self, address: IpAddr) -> Option<String> {
        self.ranges.iter().find(|range| range.contains(address)).map(|range| {
            if range.prefix == bits(range.network).1 {
                range.network.to_string()
            } else {
                format!("{}/{}", range.network, range.prefix)
            }
        })
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl ListText for IpList {
    fn parse(text: &str) -> Result<Self, String> {
        IpList::parse(text)
    }
}

/// The IP list the proxy and threat-intelligence lookups use.
pub type ReloadingIpList = Reloading<IpList>;

impl Reloading<IpList> {
    pub fn contains(&self, address: IpAddr) -> bool {
        self.with(|list| list.contains(address)).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn addresses_and_ranges_match_by_family() {
        let list = IpList::parse("# comment\n198.51.100.7\n203.0.113.0/24 # a range\n2001:db8::/32\n").unwrap();
        assert!(list.contains("198.51.100.7".parse().unwrap()));
        assert!(!list.contains("198.51.100.8".parse().unwrap()));
        assert!(list.contains("203.0.113.200".parse().unwrap()));
        assert!(list.contains("2001:db8::1".parse().unwrap()));
        assert!(!list.contains("2001:db9::1".parse().unwrap()));
        assert!(IpList::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert_eq!(list.matching("203.0.113.9".parse().unwrap()).as_deref(), Some("203.0.113.0/24"));
        assert_eq!(list.matching("198.51.100.7".parse().unwrap()).as_deref(), Some("198.51.100.7"));
        assert_eq!(list.matching("192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        assert_eq!(IpList::parse("1.2.3.4\nnot-an-ip\n").unwrap_err(), "line 2: `not-an-ip` is not an address");
        assert!(IpList::parse("1.2.3.4/33").is_err());
    }

    #[test]
    fn the_file_is_reloaded_when_it_changes() {
        let path = std::env::temp_dir().join(format!("palisade-ips-{}", std::process::id()));
        std::fs::write(&path, "10.0.0.1\n").unwrap();
        let list = ReloadingIpList::from_file(&path, Duration::ZERO).unwrap();
        assert!(list.contains("10.0.0.1".parse().unwrap()));
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "10.0.0.2\n").unwrap();
        let newer = SystemTime::now() + Duration::from_secs(1);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(newer).unwrap();
        assert!(list.contains("10.0.0.2".parse().unwrap()), "reloaded without a restart");
        assert!(!list.contains("10.0.0.1".parse().unwrap()));
        std::fs::write(&path, "garbage\n").unwrap();
        file.set_modified(newer + Duration::from_secs(1)).unwrap();
        assert!(list.contains("10.0.0.2".parse().unwrap()), "a bad file keeps the last good list");
        let _ = std::fs::remove_file(&path);
    }
}
