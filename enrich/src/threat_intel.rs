//! Threat-intelligence verdicts: the IP addresses and domains an alert mentions (its source IP, its details, the
//! process's arguments, the network fields of its evidence events) looked up in list files the operator supplies
//! (feeds exported as one indicator per line). Each list has a name and a verdict; files are re-read when they
//! change, so a feed refreshed by cron takes effect without a restart.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use palisade_detect::ip_list::IpList;
use palisade_detect::lists::{ListText, Reloading};
use palisade_schemas::{Alert, ThreatIntelMatch};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorKind {
    /// Addresses and CIDR ranges, IPv4 and IPv6.
    Ip,
    /// Domains; an entry also matches its subdomains.
    Domain,
}

impl IndicatorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Domain => "domain",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Malicious,
    Suspicious,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Malicious => "malicious",
            Self::Suspicious => "suspicious",
        }
    }
}

/// `[[enrich.threat_intel]]`: one list file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ThreatIntelList {
    /// Shown in the verdict, so the SOC knows which feed said so.
    pub name: String,
    pub path: PathBuf,
    pub kind: IndicatorKind,
    #[serde(default = "default_verdict")]
    pub verdict: Verdict,
    /// How often the file's modification time is checked, in seconds.
    #[serde(default = "default_reload_secs")]
    pub reload_secs: u64,
}

const fn default_verdict() -> Verdict {
    Verdict::Malicious
}

const fn default_reload_secs() -> u64 {
    30
}

/// Domains, one per line (`#` comments; a leading `*.` or `.` is accepted and means the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainList {
    domains: HashSet<String>,
}

fn is_domain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

impl ListText for DomainList {
    fn parse(text: &str) -> Result<Self, String> {
        let mut domains = HashSet::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let domain = line.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.').to_lowercase();
            if !is_domain(&domain) {
                return Err(format!("line {}: `{line}` is not a domain", number + 1));
            }
            domains.insert(domain);
        }
        Ok(Self { domains })
    }
}

impl DomainList {
    /// The listed domain that `host` is or is under.
    pub fn matching(&self, host: &str) -> Option<&str> {
        let mut rest = host;
        loop {
            if let Some(found) = self.domains.get(rest) {
                return Some(found);
            }
            rest = rest.split_once('.')?.1;
        }
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

enum Loaded {
    Ip(Reloading<IpList>),
    Domain(Reloading<DomainList>),
}

struct List {
    name: String,
    verdict: Verdict,
    loaded: Loaded,
}

/// Every configured list, ready to look up.
pub struct ThreatIntel {
    lists: Vec<List>,
}

/// An indicator found in an alert, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Indicator {
    pub kind: IndicatorKind,
    pub value: String,
    pub field: String,
}

/// Splits `host[:port]`, `[v6]:port` and URLs into the host part.
fn host_of(token: &str) -> &str {
    let rest = token.split_once("://").map_or(token, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed);
    }
    // A bare IPv6 address has several colons; only `host:port` has one.
    if host.matches(':').count() == 1 { host.split(':').next().unwrap_or(host) } else { host }
}

/// The indicator a word of text names, if any: an IP address, or a host name with at least one dot whose last
/// label is alphabetic (so `1.2.3` and `file.7` are not taken for domains).
fn indicator_in(word: &str) -> Option<(IndicatorKind, String)> {
    let word = word.trim_matches(|c: char| matches!(c, '"' | '\'' | ',' | ';' | '(' | ')' | '<' | '>' | '='));
    let host = host_of(word);
    if let Ok(address) = host.parse::<IpAddr>() {
        return Some((IndicatorKind::Ip, address.to_string()));
    }
    let host = host.trim_end_matches('.').to_lowercase();
    let last = host.rsplit('.').next().unwrap_or_default();
    (host.contains('.') && last.len() >= 2 && last.chars().all(|c| c.is_ascii_alphabetic()) && is_domain(&host))
        .then_some((IndicatorKind::Domain, host))
}

/// Every IP address and domain the alert mentions, once each (the first place it was found).
pub fn indicators(alert: &Alert) -> Vec<Indicator> {
    let mut found: Vec<Indicator> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |text: &str, field: &str| {
        for word in text.split(|c: char| c.is_whitespace() || c == ',') {
            if let Some((kind, value)) = indicator_in(word)
                && seen.insert((kind, value.clone()))
            {
                found.push(Indicator { kind, value, field: field.to_owned() });
            }
        }
    };
    if let Some(ip) = &alert.source_ip {
        add(ip, "source_ip");
    }
    for (key, value) in &alert.details {
        add(value, &format!("details.{key}"));
    }
    if let Some(process) = &alert.process {
        for arg in &process.args {
            add(arg, "process.args");
        }
    }
    for evidence in &alert.evidence {
        // Node events carry their addresses in `net`; audit evidence's source IPs are `source_ip` already.
        if !evidence.contains("\"net\"") {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(evidence) else { continue };
        for key in ["dst_addr", "src_addr"] {
            if let Some(address) = value.pointer(&format!("/net/{key}")).and_then(|v| v.as_str()) {
                add(address, &format!("evidence.net.{key}"));
            }
        }
    }
    found
}

impl ThreatIntel {
    pub fn load(lists: &[ThreatIntelList]) -> Result<Self, String> {
        let mut loaded = Vec::with_capacity(lists.len());
        for list in lists {
            if list.name.trim().is_empty() {
                return Err(format!("enrich.threat_intel ({}): `name` is empty", list.path.display()));
            }
            let every = Duration::from_secs(list.reload_secs);
            let file = match list.kind {
                IndicatorKind::Ip => Loaded::Ip(Reloading::from_file(&list.path, every)?),
                IndicatorKind::Domain => Loaded::Domain(Reloading::from_file(&list.path, every)?),
            };
            loaded.push(List { name: list.name.clone(), verdict: list.verdict, loaded: file });
        }
        Ok(Self { lists: loaded })
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The verdicts of every list for every indicator of `alert`.
    pub fn verdicts(&self, alert: &Alert) -> Vec<ThreatIntelMatch> {
        if self.lists.is_empty() {
            return Vec::new();
        }
        let mut verdicts = Vec::new();
        for indicator in indicators(alert) {
            for list in &self.lists {
                let matched = match (&list.loaded, indicator.kind) {
                    (Loaded::Ip(ips), IndicatorKind::Ip) => indicator
                        .value
                        .parse::<IpAddr>()
                        .ok()
                        .and_then(|address| ips.with(|l| l.matching(address)).flatten()),
                    (Loaded::Domain(domains), IndicatorKind::Domain) => {
                        domains.with(|l| l.matching(&indicator.value).map(str::to_owned)).flatten()
                    }
                    _ => None,
                };
                if let Some(matched) = matched {
                    verdicts.push(ThreatIntelMatch {
                        indicator: indicator.value.clone(),
                        kind: indicator.kind.as_str().to_owned(),
                        verdict: list.verdict.as_str().to_owned(),
                        list: list.name.clone(),
                        matched,
                        field: indicator.field.clone(),
                    });
                }
            }
        }
        verdicts
    }
}

#[cfg(test)]
mod tests {
    use palisade_schemas::ProcessInfo;

    use super::*;

    fn alert() -> Alert {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/alert.v4.json")).unwrap();
        let mut alert: Alert = serde_json::from_str(&text).unwrap();
        alert.threat_intel.clear();
        alert.details.clear();
        alert.evidence.clear();
        alert.process = None;
        alert.source_ip = None;
        alert
    }

    fn lists(ips: &str, domains: &str) -> (ThreatIntel, Vec<PathBuf>) {
        let dir =
            std::env::temp_dir().join(format!("palisade-ti-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ip_path, domain_path) = (dir.join("ips.txt"), dir.join("domains.txt"));
        std::fs::write(&ip_path, ips).unwrap();
        std::fs::write(&domain_path, domains).unwrap();
        let config = [
            ThreatIntelList {
                name: "feodo".into(),
                path: ip_path.clone(),
                kind: IndicatorKind::Ip,
                verdict: Verdict::Malicious,
                reload_secs: 0,
            },
            ThreatIntelList {
                name: "urlhaus".into(),
                path: domain_path.clone(),
                kind: IndicatorKind::Domain,
                verdict: Verdict::Suspicious,
                reload_secs: 0,
            },
        ];
        (ThreatIntel::load(&config).unwrap(), vec![ip_path, domain_path])
    }

    #[test]
    fn indicators_come_from_ip_details_args_and_evidence() {
        let mut alert = alert();
        alert.source_ip = Some("198.51.100.4".into());
        alert.details.insert("destination".into(), "203.0.113.9:3333".into());
        alert.details.insert("url".into(), "http://Dl.Evil.Example/x.sh".into());
        alert.details.insert("file".into(), "/tmp/config.7".into());
        alert.process = Some(ProcessInfo {
            pid: 1,
            ppid: 0,
            executable: "/usr/bin/xmrig".into(),
            args: vec!["xmrig".into(), "-o".into(), "stratum+tcp://pool.minexmr.com:4444".into(), "--threads=2".into()],
            user: None,
            parent_chain: vec![],
        });
        alert.evidence.push(r#"{"kind":"CONNECT","net":{"dst_addr":"2001:db8::7","src_addr":null}}"#.into());
        let found: Vec<(String, String)> = indicators(&alert).into_iter().map(|i| (i.value, i.field)).collect();
        assert_eq!(
            found,
            [
                ("198.51.100.4".to_owned(), "source_ip".to_owned()),
                ("203.0.113.9".into(), "details.destination".into()),
                ("dl.evil.example".into(), "details.url".into()),
                ("pool.minexmr.com".into(), "process.args".into()),
                ("2001:db8::7".into(), "evidence.net.dst_addr".into()),
            ]
        );
    }

    #[test]
    fn listed_addresses_ranges_and_parent_domains_give_verdicts() {
        let (intel, paths) = lists("203.0.113.0/24\n", "# feed\n*.minexmr.com\nevil.example\n");
        let mut alert = alert();
        alert.source_ip = Some("203.0.113.9".into());
        alert.details.insert("url".into(), "https://cdn.evil.example/payload".into());
        let verdicts = intel.verdicts(&alert);
        assert_eq!(verdicts.len(), 2, "{verdicts:?}");
        assert_eq!(
            (verdicts[0].indicator.as_str(), verdicts[0].matched.as_str(), verdicts[0].verdict.as_str()),
            ("203.0.113.9", "203.0.113.0/24", "malicious")
        );
        assert_eq!(verdicts[0].list, "feodo");
        assert_eq!(
            (verdicts[1].indicator.as_str(), verdicts[1].matched.as_str(), verdicts[1].list.as_str()),
            ("cdn.evil.example", "evil.example", "urlhaus")
        );
        assert_eq!(verdicts[1].verdict, "suspicious");
        // Look-alikes: an unlisted address, and a domain that only ends with the same letters.
        let mut other = self::alert();
        other.source_ip = Some("203.0.114.9".into());
        other.details.insert("url".into(), "https://notevil.example/".into());
        assert!(intel.verdicts(&other).is_empty());
        for path in paths {
            let _ = std::fs::remove_file(path);
        }
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        assert_eq!(
            DomainList::parse("good.example\nnot a domain\n").unwrap_err(),
            "line 2: `not a domain` is not a domain"
        );
        let missing = ThreatIntelList {
            name: "x".into(),
            path: "/nonexistent/palisade-ti".into(),
            kind: IndicatorKind::Domain,
            verdict: Verdict::Malicious,
            reload_secs: 30,
        };
        assert!(
            ThreatIntel::load(&[missing])
                .err()
                .expect("a missing file is refused")
                .contains("/nonexistent/palisade-ti")
        );
    }
}
