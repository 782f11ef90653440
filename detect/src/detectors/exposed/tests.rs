use palisade_schemas::AuditEvent;
use serde_json::{Value, json};

use super::detector::broad_range;
use super::{ExposedDashboard, ExposedPostgresBroadIpRange, ExposedRedis, ExposedService};
use crate::unit::{Event, StatelessDetector};

fn service(name: &str, kind: &str, ports: &[(i64, i64)], selector: Value, ranges: &[&str]) -> AuditEvent {
    let ports: Vec<Value> = ports.iter().map(|(p, t)| json!({"port": p, "targetPort": t})).collect();
    let mut object = json!({"kind": "Service", "metadata": {"name": name, "namespace": "apps"},
        "spec": {"type": kind, "ports": ports, "selector": selector}});
    if !ranges.is_empty() {
        object["spec"]["loadBalancerSourceRanges"] = json!(ranges);
    }
    let event = json!({"kind": "Event", "auditID": "x", "stage": "ResponseComplete", "verb": "create", "requestURI": "/api",
        "user": {"username": "dev"}, "objectRef": {"resource": "services", "namespace": "apps"},
        "responseStatus": {"code": 201}, "requestObject": object, "stageTimestamp": "2026-11-27T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

fn fires(detector: &dyn StatelessDetector, event: &AuditEvent) -> bool {
    !detector.detect(&Event::Audit(event)).is_empty()
}

#[test]
fn upstream_dashboard_service_fires_only_as_a_load_balancer() {
    let selector = json!({"k8s-app": "kubernetes-dashboard"});
    assert!(fires(
        &ExposedDashboard,
        &service("kubernetes-dashboard", "LoadBalancer", &[(443, 8443)], selector.clone(), &[])
    ));
    assert!(!fires(&ExposedDashboard, &service("kubernetes-dashboard", "ClusterIP", &[(443, 8443)], selector, &[])));
    assert!(!fires(&ExposedDashboard, &service("web", "LoadBalancer", &[(443, 8443)], json!({"app": "web"}), &[])));
}

#[test]
fn redis_by_port_or_name() {
    assert!(fires(&ExposedRedis, &service("cache", "LoadBalancer", &[(6379, 6379)], json!({"app": "cache"}), &[])));
    assert!(fires(
        &ExposedRedis,
        &service("sessions", "LoadBalancer", &[(80, 7000)], json!({"app": "redis-cluster"}), &[])
    ));
    assert!(!fires(&ExposedRedis, &service("cache", "NodePort", &[(6379, 6379)], json!({"app": "cache"}), &[])));
    assert!(!fires(&ExposedRedis, &service("web", "LoadBalancer", &[(80, 8080)], json!({"app": "web"}), &[])));
}

#[test]
fn sensitive_applications() {
    assert!(fires(&ExposedService, &service("argocd-server", "LoadBalancer", &[(443, 8080)], json!({}), &[])));
    assert!(fires(
        &ExposedService,
        &service("ui", "LoadBalancer", &[(80, 4040)], json!({"app": "weave-scope-app"}), &[])
    ));
    assert!(fires(&ExposedService, &service("wf", "LoadBalancer", &[(2746, 2746)], json!({}), &[])));
    assert!(!fires(&ExposedService, &service("shop", "LoadBalancer", &[(443, 8443)], json!({"app": "shop"}), &[])));
}

#[test]
fn postgres_with_no_or_broad_source_ranges() {
    let selector = json!({"app": "db"});
    assert!(fires(
        &ExposedPostgresBroadIpRange,
        &service("db", "LoadBalancer", &[(5432, 5432)], selector.clone(), &[])
    ));
    assert!(fires(
        &ExposedPostgresBroadIpRange,
        &service("db", "LoadBalancer", &[(5432, 5432)], selector.clone(), &["0.0.0.0/0"])
    ));
    assert!(fires(
        &ExposedPostgresBroadIpRange,
        &service("db", "LoadBalancer", &[(5432, 5432)], selector.clone(), &["10.0.0.0/8"])
    ));
    assert!(!fires(
        &ExposedPostgresBroadIpRange,
        &service("db", "LoadBalancer", &[(5432, 5432)], selector.clone(), &["203.0.113.0/24"])
    ));
    assert!(!fires(
        &ExposedPostgresBroadIpRange,
        &service("web", "LoadBalancer", &[(443, 8443)], json!({"app": "web"}), &[])
    ));
}

#[test]
fn range_breadth() {
    assert!(broad_range("0.0.0.0/0"));
    assert!(broad_range("::/0"));
    assert!(broad_range("2001:db8::/32"));
    assert!(!broad_range("198.51.100.7/32"));
    assert!(!broad_range("2001:db8::/64"));
    assert!(!broad_range("garbage"));
}
