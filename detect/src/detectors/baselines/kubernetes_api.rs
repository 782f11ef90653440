//! K8S.NODE_KubernetesAPI, its baseline half ("unusual process for that workload"): for each workload, the
//! executables that connect to the API server, learned for a period of event time; after it, an executable of
//! that workload connecting for the first time is reported once. The match half (a shell or downloader using the
//! service-account token or calling the API by URL) is a node rule and needs no learning.

use std::net::IpAddr;

use palisade_schemas::NodeEventKind;
use serde_json::Value;

use super::detector::BaselinesConfig;
use crate::baseline::{LearningState, Profiles, Verdict};
use crate::engine::{Event, Finding};
use crate::meta::{AlertTypeMeta, catalogue_entry};
use crate::windowed::{PodContext, WindowedDetector};

const KUBERNETES_API: &AlertTypeMeta = catalogue_entry("K8S.NODE_KubernetesAPI");

/// An API server endpoint as configured: `address:port`, or `:port` for any address on that port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    address: Option<IpAddr>,
    port: i64,
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let bad = || format!("detect.baselines.api_server_addresses: {text:?} is not address:port or :port");
    let (address, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    let address = if address.is_empty() { None } else { Some(address.parse().map_err(|_| bad())?) };
    Ok(Endpoint { address, port: i64::from(port) })
}

pub struct KubernetesApiBaseline {
    profiles: Profiles,
    endpoints: Vec<Endpoint>,
}

impl KubernetesApiBaseline {
    pub fn new(config: &BaselinesConfig) -> Result<Self, String> {
        let endpoints = config.api_server_addresses.iter().map(|e| parse_endpoint(e)).collect::<Result<_, _>>()?;
        Ok(Self { profiles: Profiles::new(config.kubernetes_api), endpoints })
    }

    fn is_api_server(&self, address: &str, port: i64) -> bool {
        let address: Option<IpAddr> = address.parse().ok();
        self.endpoints.iter().any(|e| e.port == port && (e.address.is_none() || e.address == address))
    }
}

impl WindowedDetector for KubernetesApiBaseline {
    fn meta(&self) -> &'static AlertTypeMeta {
        KUBERNETES_API
    }

    fn observe(&mut self, _event: &Event<'_>) -> Vec<Finding> {
        // The key is the workload, which only the engine's pod table knows: see `observe_in`.
        Vec::new()
    }

    fn observe_in(
        &mut self,
        event: &Event<'_>,
        context: Option<&PodContext>,
    ) -> Vec<(&'static AlertTypeMeta, Finding)> {
        let Event::Node(node) = event else { return Vec::new() };
        // A pod whose workload is unknown is not profiled (each container would learn alone).
        let (Some(context), true, NodeEventKind::NetConnect) = (context, node.in_container, node.kind) else {
            return Vec::new();
        };
        let Some(net) = &node.net else { return Vec::new() };
        let (Some(address), Some(port)) = (net.dst_addr.as_deref(), net.dst_port) else { return Vec::new() };
        if !self.is_api_server(address, port) {
            return Vec::new();
        }
        let executable = node.executable.clone().unwrap_or_else(|| node.comm.clone());
        let key = format!("{}/{}", context.namespace, context.workload);
        let Verdict::New { learned_since_ms, known_operations } =
            self.profiles.observe(&key, &executable, node.timestamp_ms)
        else {
            return Vec::new();
        };
        let mut finding = Finding { subject: format!("baseline {executable}"), ..Finding::default() };
        finding.details.insert("why".into(), "a process this workload did not use to reach the API server".into());
        finding.details.insert("process".into(), executable);
        finding.details.insert("destination".into(), format!("{address}:{port}"));
        finding.details.insert("learned_since_ms".into(), learned_since_ms.to_string());
        finding.details.insert("known_processes".into(), known_operations.to_string());
        vec![(KUBERNETES_API, finding)]
    }

    profile_state!();
}

#[cfg(test)]
mod tests {
    use palisade_schemas::{NetDetail, NodeEvent};

    use super::*;
    use crate::baseline::BaselineConfig;

    fn connect(executable: &str, address: &str, port: i64, at_ms: i64) -> NodeEvent {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/node_event.v1.json"))
                .unwrap();
        let mut event: NodeEvent = serde_json::from_str(&text).unwrap();
        event.kind = NodeEventKind::NetConnect;
        event.executable = Some(executable.into());
        event.in_container = true;
        event.timestamp_ms = at_ms;
        event.net = Some(NetDetail {
            family: "inet".into(),
            protocol: "tcp".into(),
            src_addr: None,
            src_port: None,
            dst_addr: Some(address.into()),
            dst_port: Some(port),
            payload_head: None,
        });
        event
    }

    fn context(workload: &str) -> PodContext {
        PodContext {
            namespace: "shop".into(),
            pod: format!("{workload}-1"),
            workload: format!("Deployment/{workload}"),
            ..PodContext::default()
        }
    }

    fn detector() -> KubernetesApiBaseline {
        let config = BaselinesConfig {
            kubernetes_api: BaselineConfig { learning_secs: 60, ..BaselineConfig::default() },
            ..BaselinesConfig::default()
        };
        KubernetesApiBaseline::new(&config).unwrap()
    }

    fn fire(detector: &mut KubernetesApiBaseline, event: &NodeEvent, context: Option<&PodContext>) -> usize {
        detector.observe_in(&Event::Node(event), context).len()
    }

    #[test]
    fn a_new_process_of_a_workload_reaching_the_api_server_after_learning_fires_once() {
        let mut detector = detector();
        let operator = context("operator");
        assert_eq!(fire(&mut detector, &connect("/manager", "10.96.0.1", 443, 0), Some(&operator)), 0, "learning");
        assert_eq!(fire(&mut detector, &connect("/manager", "10.96.0.1", 443, 120_000), Some(&operator)), 0, "known");
        assert_eq!(fire(&mut detector, &connect("/usr/bin/python3", "10.96.0.1", 443, 121_000), Some(&operator)), 1);
        assert_eq!(fire(&mut detector, &connect("/usr/bin/python3", "10.96.0.1", 443, 122_000), Some(&operator)), 0);
        // The endpoint's own port on any address counts too (:6443 in the defaults).
        assert_eq!(fire(&mut detector, &connect("/bin/nc", "192.168.1.10", 6443, 123_000), Some(&operator)), 1);
    }

    #[test]
    fn look_alikes_do_not_fire() {
        let mut detector = detector();
        let web = context("web");
        fire(&mut detector, &connect("/app", "10.96.0.1", 443, 0), Some(&web));
        // Another address or port, an unknown workload, a host process: not profiled, not reported.
        assert_eq!(fire(&mut detector, &connect("/usr/bin/curl", "10.96.0.2", 443, 120_000), Some(&web)), 0);
        assert_eq!(fire(&mut detector, &connect("/usr/bin/curl", "10.96.0.1", 80, 120_000), Some(&web)), 0);
        assert_eq!(fire(&mut detector, &connect("/usr/bin/curl", "10.96.0.1", 443, 120_000), None), 0);
        let mut host = connect("/usr/bin/curl", "10.96.0.1", 443, 120_000);
        host.in_container = false;
        assert_eq!(fire(&mut detector, &host, Some(&web)), 0);
        // Another workload learns for itself: its first process is learning, not new.
        assert_eq!(fire(&mut detector, &connect("/usr/bin/curl", "10.96.0.1", 443, 130_000), Some(&context("new"))), 0);
    }

    #[test]
    fn endpoints_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_endpoint(":6443").unwrap(), Endpoint { address: None, port: 6443 });
        assert_eq!(parse_endpoint("[fd00::1]:443").unwrap().address, Some("fd00::1".parse().unwrap()));
        assert!(parse_endpoint("kubernetes:443").is_err());
        assert!(parse_endpoint("10.0.0.1").is_err());
    }
}
