use palisade_schemas::AuditEvent;
use serde_json::json;

use super::TiProxy;
use crate::ip_list::{IpList, ReloadingIpList};
use crate::unit::{Event, StatelessDetector};

fn request(ips: &[&str]) -> AuditEvent {
    let event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": "get",
        "requestURI": "/api/v1/namespaces/default/secrets", "user": {"username": "u"}, "sourceIPs": ips,
        "stageTimestamp": "2026-11-27T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

#[test]
fn listed_sources_fire_unlisted_do_not() {
    let detector = TiProxy { list: ReloadingIpList::fixed(IpList::parse("185.220.101.0/24\n").unwrap()) };
    let findings = detector.detect(&Event::Audit(&request(&["10.0.0.1", "185.220.101.33"])));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].details["listed_source_ip"], "185.220.101.33");
    assert!(detector.detect(&Event::Audit(&request(&["185.220.102.1"]))).is_empty());
    assert!(detector.detect(&Event::Audit(&request(&["not-an-ip"]))).is_empty());
}

#[test]
fn the_shipped_default_list_is_empty_and_fires_nothing() {
    let shipped = IpList::parse(include_str!("../../../data/proxy_ips.txt")).unwrap();
    assert!(shipped.is_empty());
}
