//! K8S_TI_Proxy: an API request from a source address on the proxy/anonymiser list (`detect.proxy_list_path`,
//! re-read when it changes; the shipped default list is empty, see `detect/data/proxy_ips.txt`).

use std::net::IpAddr;

use crate::engine::{Event, Finding, StatelessDetector};
use crate::ip_list::ReloadingIpList;
use crate::meta::{AlertTypeMeta, catalogue_entry};

const META: &AlertTypeMeta = catalogue_entry("K8S_TI_Proxy");

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
