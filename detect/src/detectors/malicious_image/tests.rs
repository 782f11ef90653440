use palisade_schemas::AuditEvent;
use serde_json::json;

use super::MaliciousContainerImage;
use crate::unit::{Event, StatelessDetector};

fn pod(images: &[&str]) -> AuditEvent {
    let containers: Vec<_> =
        images.iter().enumerate().map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect();
    let event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": "create", "requestURI": "/api",
        "user": {"username": "u"}, "objectRef": {"resource": "pods", "namespace": "ns"}, "responseStatus": {"code": 201},
        "requestObject": {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}},
        "stageTimestamp": "2026-11-27T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

#[test]
fn fires_for_miner_images_from_any_registry_and_tag() {
    for image in
        ["xmrig", "metal3d/xmrig:latest", "ghcr.io/x/XMRig:6.21", "docker.io/minergate/minergate-cli@sha256:ab"]
    {
        let findings = MaliciousContainerImage.detect(&Event::Audit(&pod(&["nginx", image])));
        assert_eq!(findings.len(), 1, "{image}");
        assert_eq!(findings[0].image.as_deref(), Some(image));
    }
}

#[test]
fn does_not_fire_for_look_alike_names() {
    for image in ["nginx:1.27", "xmrig-exporter-dashboard-ui/nginx", "company/not-xmrig", "registry.io/xmrigger"] {
        assert!(MaliciousContainerImage.detect(&Event::Audit(&pod(&[image]))).is_empty(), "{image}");
    }
}
