//! What `/proc` says of a process at the time its exec is processed: the kind of file behind fds 0-2 (a socket
//! there is how a reverse shell shows), its terminal, and its effective capabilities. Read after the event, so a
//! process that already exited yields `unknown` (short-lived commands); long-lived ones (shells) are caught.

/// The kind of file a descriptor link points at.
pub fn classify(link: &str) -> &'static str {
    if link.starts_with("socket:") {
        "socket"
    } else if link.starts_with("pipe:") {
        "pipe"
    } else if link.starts_with("/dev/pts/") || link.starts_with("/dev/tty") || link == "/dev/console" {
        "tty"
    } else if link == "/dev/null" {
        "null"
    } else if link.starts_with("anon_inode:") {
        "anon"
    } else {
        "file"
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stdio: Vec<String>,
    pub tty: Option<String>,
    pub capabilities_effective: Option<i64>,
    pub effective_uid: Option<i64>,
}

/// Effective uid: the second field of the `Uid:` line.
pub fn parse_effective_uid(status: &str) -> Option<i64> {
    status.lines().find_map(|line| line.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

pub fn parse_cap_eff(status: &str) -> Option<i64> {
    let hex = status.lines().find_map(|line| line.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok().map(|v| v as i64)
}

pub fn snapshot(pid: u32) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for fd in 0..3 {
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).map(|p| p.display().to_string());
        let kind = match &link {
            Ok(link) => classify(link),
            Err(_) => "unknown",
        };
        if kind == "tty" && snapshot.tty.is_none() {
            snapshot.tty = link.ok();
        }
        snapshot.stdio.push(kind.to_owned());
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
    snapshot.capabilities_effective = status.as_deref().and_then(parse_cap_eff);
    snapshot.effective_uid = status.as_deref().and_then(parse_effective_uid);
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_links_classify() {
        assert_eq!(classify("socket:[12345]"), "socket");
        assert_eq!(classify("pipe:[9]"), "pipe");
        assert_eq!(classify("/dev/pts/3"), "tty");
        assert_eq!(classify("/dev/null"), "null");
        assert_eq!(classify("/var/log/app.log"), "file");
    }

    #[test]
    fn effective_capabilities_parse_from_status() {
        let status = "Name:\tbash\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
        assert_eq!(parse_effective_uid("Uid:\t1000\t0\t0\t0\n"), Some(0));
    }

    #[test]
    fn this_process_has_a_snapshot() {
        let snapshot = snapshot(std::process::id());
        assert_eq!(snapshot.stdio.len(), 3);
        assert!(snapshot.stdio.iter().all(|kind| kind != "unknown"));
        assert!(snapshot.capabilities_effective.is_some());
    }
}
