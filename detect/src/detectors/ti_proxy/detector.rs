//! K8S_TI_Proxy: an API request from a source address on the proxy/anonymiser list (`detect.proxy_list_path`,
//! re-read when it changes; the shipped default list is empty, see `detect/data/proxy_ips.txt`).

use std::net::IpAddr;

use crate::ip_list::ReloadingIpList;
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

pub const META: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_TI_Proxy",
    title: "API request from a proxy or anonymiser IP address",
    severity: Severity::Low,
    tactics: &["Execution"],
    techniques: &["T1090.003", "T1078"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when an API request comes from a source IP on a proxy/anonymiser list (TOR exit nodes etc.; list loaded from a file, reloadable).",
    false_positives: "company egress proxies or VPN exits listed by a feed. Remove them from the list file, or except by `user`.",
    audit_level: Some("Metadata"),
    learned: None,
    windowed: None,
    unit: file!(),
};

pub struct TiProxy {
    pub list: ReloadingIpList,
}

impl StatelessDetector for TiProxy {
    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        if audit.stage != "ResponseComplete" {
            return Vec::new();
        }
        let listed =
            audit.source_ips.iter().find(|ip| ip.parse::<IpAddr>().is_ok_and(|address| self.list.contains(address)));
        let Some(ip) = listed else { return Vec::new() };
        let mut finding = Finding::default();
        finding.details.insert("listed_source_ip".into(), ip.clone());
        finding.details.insert("verb".into(), audit.verb.clone());
        finding.details.insert("request_uri".into(), audit.request_uri.clone());
        vec![finding]
    }
}
