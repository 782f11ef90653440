//! Suppression rules: the SOC's "we know, stop telling us until then". A rule matches alerts by entity (cluster,
//! namespace, workload, pod, image, node, user, container, process path, source address) and optionally alert
//! type, carries a reason, and expires. A suppressed alert is not sent; it is counted by rule on `/metrics`.
//! Unlike a detect exception (a permanent part of a rule, reviewed with the configuration), a suppression is
//! temporary and can live in its own file, re-read when it changes, so it is switched on without a restart;
//! `palisade replay --alerts` previews a candidate rule against the alerts already raised.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use palisade_detect::ip_list::IpList;
use palisade_detect::lists::{ListText, Reloading};
use palisade_detect::lookup;
use palisade_schemas::Alert;
use palisade_schemas::k8s_audit::parse_rfc3339_ms;
use serde::Deserialize;

/// One rule. Every entity field given must match (AND); at least one must be given.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SuppressionRule {
    /// Unique; the metrics and the replay preview name the rule by it.
    pub name: String,
    /// Catalogue ID; absent means every alert type about the entity.
    pub alert_type: Option<String>,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// `Kind/name`, as alerts carry it.
    pub workload: Option<String>,
    /// Pod name; a trailing `*` matches any suffix (the generated part of a ReplicaSet's pod names).
    pub pod: Option<String>,
    /// Container image; a trailing `*` matches any suffix (tag or digest).
    pub image: Option<String>,
    pub node: Option<String>,
    /// Kubernetes user of an audit alert.
    pub user: Option<String>,
    pub container_id: Option<String>,
    /// Executable path of a node alert's process.
    pub process_path: Option<String>,
    /// The alert's source address: an address or a CIDR range.
    pub source_ip: Option<String>,
    /// Why these alerts are expected; required.
    pub reason: String,
    /// RFC 3339 time after which the rule no longer applies; required, so no suppression is forgotten.
    pub expires: String,
    /// Who asked for it (a name or ticket); shown in the replay preview.
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
struct SuppressionFile {
    #[serde(default)]
    suppression: Vec<SuppressionRule>,
}

/// A validated rule, ready to match.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub rule: SuppressionRule,
    pub expires_ms: i64,
    source_range: Option<IpList>,
}

/// The validated rules of one file or one configuration section.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Compiled>,
}

fn prefix_match(pattern: &Option<String>, value: &Option<String>) -> bool {
    match (pattern, value) {
        (None, _) => true,
        (Some(pattern), Some(value)) => match pattern.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => pattern == value,
        },
        (Some(_), None) => false,
    }
}

fn exact(pattern: &Option<String>, value: &Option<String>) -> bool {
    pattern.as_ref().is_none_or(|pattern| value.as_ref() == Some(pattern))
}

impl Compiled {
    fn compile(rule: &SuppressionRule) -> Result<Self, String> {
        let name = rule.name.trim();
        if name.is_empty() {
            return Err("a suppression rule has an empty `name`".into());
        }
        if rule.reason.trim().is_empty() {
            return Err(format!("suppression {name:?}: `reason` is empty; say why these alerts are expected"));
        }
        let expires_ms = parse_rfc3339_ms(&rule.expires).ok_or_else(|| {
            format!(
                "suppression {name:?}: `expires` = {:?} is not an RFC 3339 time (2027-01-31T00:00:00Z)",
                rule.expires
            )
        })?;
        if let Some(alert_type) = &rule.alert_type
            && lookup(alert_type).is_none()
        {
            return Err(format!("suppression {name:?}: no alert type {alert_type:?}; `palisade catalogue` lists them"));
        }
        let entity = [
            &rule.cluster,
            &rule.namespace,
            &rule.workload,
            &rule.pod,
            &rule.image,
            &rule.node,
            &rule.user,
            &rule.container_id,
            &rule.process_path,
            &rule.source_ip,
        ];
        if entity.iter().all(|field| field.is_none()) {
            return Err(format!(
                "suppression {name:?}: no entity to match; give at least one of cluster, namespace, workload, pod, \
                 image, node, user, container_id, process_path, source_ip (to silence a whole alert type, disable \
                 it in detect.rules)"
            ));
        }
        let source_range = rule
            .source_ip
            .as_deref()
            .map(|range| IpList::parse(range).map_err(|e| format!("suppression {name:?}: source_ip: {e}")))
            .transpose()?;
        Ok(Self { rule: rule.clone(), expires_ms, source_range })
    }

    /// Whether the rule covers `alert` at wall-clock time `now_ms` (an expired rule covers nothing).
    pub fn covers(&self, alert: &Alert, now_ms: i64) -> bool {
        let rule = &self.rule;
        now_ms < self.expires_ms
            && rule.alert_type.as_ref().is_none_or(|t| *t == alert.alert_type)
            && exact(&rule.cluster, &alert.cluster)
            && exact(&rule.namespace, &alert.namespace)
            && exact(&rule.workload, &alert.workload)
            && prefix_match(&rule.pod, &alert.pod)
            && prefix_match(&rule.image, &alert.image)
            && exact(&rule.node, &alert.node)
            && exact(&rule.user, &alert.user)
            && exact(&rule.container_id, &alert.container_id)
            && exact(&rule.process_path, &alert.process.as_ref().map(|p| p.executable.clone()))
            && self.source_range.as_ref().is_none_or(|range| {
                alert.source_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).is_some_and(|ip| range.contains(ip))
            })
    }
}

impl RuleSet {
    pub fn compile(rules: &[SuppressionRule]) -> Result<Self, String> {
        let mut names = BTreeSet::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            if !names.insert(rule.name.trim().to_owned()) {
                return Err(format!("suppression {:?} is defined twice", rule.name));
            }
            compiled.push(Compiled::compile(rule)?);
        }
        Ok(Self { rules: compiled })
    }

    pub fn rules(&self) -> &[Compiled] {
        &self.rules
    }

    /// The first rule that covers `alert` now.
    pub fn first_covering(&self, alert: &Alert, now_ms: i64) -> Option<&Compiled> {
        self.rules.iter().find(|rule| rule.covers(alert, now_ms))
    }
}

impl ListText for RuleSet {
    fn parse(text: &str) -> Result<Self, String> {
        let file: SuppressionFile = toml::from_str(text).map_err(|e| e.to_string())?;
        Self::compile(&file.suppression)
    }
}

/// The configured rules plus those of the suppression file (re-read when it changes).
pub struct Suppressions {
    inline: RuleSet,
    file: Option<Reloading<RuleSet>>,
}

impl Suppressions {
    pub fn load(inline: &[SuppressionRule], path: Option<&Path>, reload_secs: u64) -> Result<Self, String> {
        let inline = RuleSet::compile(inline).map_err(|e| format!("enrich.suppressions: {e}"))?;
        let file = path.map(|path| Reloading::from_file(path, Duration::from_secs(reload_secs))).transpose()?;
        let suppressions = Self { inline, file };
        let now = now_ms();
        suppressions.each(|rule| {
            if rule.expires_ms <= now {
                eprintln!(
                    "palisade: suppression {:?} expired at {}; it no longer applies (remove it)",
                    rule.rule.name, rule.rule.expires
                );
            }
        });
        Ok(suppressions)
    }

    pub fn none() -> Self {
        Self { inline: RuleSet::default(), file: None }
    }

    fn each(&self, mut visit: impl FnMut(&Compiled)) {
        self.inline.rules.iter().for_each(&mut visit);
        if let Some(file) = &self.file {
            file.with(|set| set.rules.iter().for_each(&mut visit));
        }
    }

    /// The name of the rule that suppresses `alert` at `now_ms`, if any.
    pub fn suppressed_by(&self, alert: &Alert, now_ms: i64) -> Option<String> {
        if let Some(rule) = self.inline.first_covering(alert, now_ms) {
            return Some(rule.rule.name.clone());
        }
        self.file.as_ref()?.with(|set| set.first_covering(alert, now_ms).map(|r| r.rule.name.clone())).flatten()
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

#[cfg(test)]
mod tests {
    use palisade_schemas::ProcessInfo;

    use super::*;

    fn alert() -> Alert {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/alert.v4.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn rule(name: &str) -> SuppressionRule {
        SuppressionRule {
            name: name.into(),
            reason: "pen test in ticket SEC-12".into(),
            expires: "2030-01-01T00:00:00Z".into(),
            ..SuppressionRule::default()
        }
    }

    const NOW: i64 = 1_800_000_000_000; // 2027-01-15

    #[test]
    fn entity_fields_combine_and_patterns_match_prefixes() {
        // The fixture: namespace default, pod priv, workload Pod/priv, image nginx:1.27, source 127.0.0.1.
        let alert = alert();
        let covers = |rule: SuppressionRule| RuleSet::compile(&[rule]).unwrap().first_covering(&alert, NOW).is_some();
        assert!(covers(SuppressionRule { namespace: Some("default".into()), ..rule("a") }));
        assert!(covers(SuppressionRule { image: Some("nginx:*".into()), pod: Some("pri*".into()), ..rule("b") }));
        assert!(covers(SuppressionRule { source_ip: Some("127.0.0.0/8".into()), ..rule("c") }));
        assert!(covers(SuppressionRule {
            alert_type: Some("K8S_PrivilegedContainer".into()),
            workload: Some("Pod/priv".into()),
            ..rule("d")
        }));
        // Look-alikes: another namespace, another type, one field of two wrong, a process on an audit alert.
        assert!(!covers(SuppressionRule { namespace: Some("kube-system".into()), ..rule("e") }));
        assert!(!covers(SuppressionRule {
            alert_type: Some("K8S_ExposedService".into()),
            namespace: Some("default".into()),
            ..rule("f")
        }));
        assert!(!covers(SuppressionRule {
            namespace: Some("default".into()),
            image: Some("redis*".into()),
            ..rule("g")
        }));
        assert!(!covers(SuppressionRule { source_ip: Some("10.0.0.0/8".into()), ..rule("h") }));
        let mut node_alert = alert.clone();
        node_alert.process = Some(ProcessInfo {
            pid: 5,
            ppid: 1,
            executable: "/usr/bin/nmap".into(),
            args: vec![],
            user: None,
            parent_chain: vec![],
        });
        let by_path =
            RuleSet::compile(&[SuppressionRule { process_path: Some("/usr/bin/nmap".into()), ..rule("i") }]).unwrap();
        assert!(by_path.first_covering(&node_alert, NOW).is_some());
        assert!(by_path.first_covering(&alert, NOW).is_none(), "the fixture's process is /bin/sh");
    }

    #[test]
    fn an_expired_rule_covers_nothing() {
        let set = RuleSet::compile(&[SuppressionRule {
            namespace: Some("default".into()),
            expires: "2027-01-01T00:00:00Z".into(),
            ..rule("old")
        }])
        .unwrap();
        let alert = alert();
        assert!(set.first_covering(&alert, parse_rfc3339_ms("2026-12-31T23:59:59Z").unwrap()).is_some());
        assert!(set.first_covering(&alert, parse_rfc3339_ms("2027-01-01T00:00:00Z").unwrap()).is_none());
    }

    #[test]
    fn rules_need_a_name_entity_reason_expiry_and_a_known_type() {
        let check = |rule: SuppressionRule| RuleSet::compile(&[rule]).unwrap_err();
        assert!(check(rule("no entity")).contains("no entity to match"));
        assert!(
            check(SuppressionRule { reason: " ".into(), namespace: Some("a".into()), ..rule("r") }).contains("reason")
        );
        assert!(
            check(SuppressionRule { expires: "next week".into(), namespace: Some("a".into()), ..rule("x") })
                .contains("RFC 3339")
        );
        assert!(
            check(SuppressionRule { alert_type: Some("K8S_Nope".into()), namespace: Some("a".into()), ..rule("t") })
                .contains("K8S_Nope")
        );
        assert!(check(SuppressionRule { source_ip: Some("not-ip".into()), ..rule("s") }).contains("source_ip"));
        let twice = SuppressionRule { namespace: Some("a".into()), ..rule("same") };
        assert!(RuleSet::compile(&[twice.clone(), twice]).unwrap_err().contains("twice"));
    }

    #[test]
    fn the_file_is_reread_when_it_changes() {
        let path = std::env::temp_dir().join(format!("palisade-suppressions-{}.toml", std::process::id()));
        std::fs::write(&path, "").unwrap();
        let suppressions = Suppressions::load(&[], Some(&path), 0).unwrap();
        let alert = alert();
        assert_eq!(suppressions.suppressed_by(&alert, NOW), None);
        std::fs::write(
            &path,
            "[[suppression]]\nname = \"scanner\"\nnamespace = \"default\"\nreason = \"weekly scan\"\n\
             expires = \"2030-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::now() + Duration::from_secs(1)).unwrap();
        assert_eq!(
            suppressions.suppressed_by(&alert, NOW).as_deref(),
            Some("scanner"),
            "switched on without a restart"
        );
        let _ = std::fs::remove_file(&path);
    }
}
