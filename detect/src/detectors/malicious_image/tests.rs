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
        let findings = MaliciousContainerImage::default().detect(&Event::Audit(&pod(&["nginx", image])));
        assert_eq!(findings.len(), 1, "{image}");
        assert_eq!(findings[0].image.as_deref(), Some(image));
    }
}

#[test]
fn does_not_fire_for_look_alike_names() {
    for image in ["nginx:1.27", "xmrig-exporter-dashboard-ui/nginx", "company/not-xmrig", "registry.io/xmrigger"] {
        assert!(MaliciousContainerImage::default().detect(&Event::Audit(&pod(&[image]))).is_empty(), "{image}");
    }
}

#[test]
fn a_miner_list_from_the_lists_directory_is_used_and_reloaded() {
    let dir = std::env::temp_dir().join(format!("palisade-miner-images-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("miner_images.txt"), "ourminer\n").unwrap();
    let lists = crate::lists::audit_lists(Some(&dir), std::time::Duration::ZERO).unwrap();
    let detector = MaliciousContainerImage { lists };
    assert_eq!(detector.detect(&Event::Audit(&pod(&["registry.example.com/team/ourminer:1.0"]))).len(), 1);
    assert!(detector.detect(&Event::Audit(&pod(&["xmrig/xmrig:6.21"]))).is_empty(), "the file replaced the list");
    std::fs::remove_file(dir.join("miner_images.txt")).unwrap();
    assert_eq!(detector.detect(&Event::Audit(&pod(&["xmrig/xmrig:6.21"]))).len(), 1, "shipped again once removed");
    let _ = std::fs::remove_dir_all(&dir);
}
