//! Baselines of node processes ("unusual process for that workload"), per workload unless said otherwise:
//! - the baseline half of K8S.NODE_KubernetesAPI: the executables that connect to the API server;
//! - the baseline half of K8S.NODE_ImdsCall: the executables that connect to the cloud metadata service;
//! - the baseline half of K8S.NODE_SuspectPasswordFileAccess: the executables that read /etc/shadow or
//!   /etc/gshadow (per workload in a container, per node on the host), besides the shipped readers.
//!
//! Each learns for a period of event time from a key's first such event; after it, an executable of that key
//! doing it for the first time is reported once. The match halves are node rules that need no learning (a shell
//! or downloader using the service-account token or calling the API by URL; a request for an identity token; a
//! shell or file tool reading the shadow file). The detect rules' exceptions are the allow-lists.

use std::net::IpAddr;

use palisade_schemas::{NodeEvent, NodeEventKind};
use serde_json::Value;

use super::detector::BaselinesConfig;
use crate::baseline::{Profiles, Verdict};
use crate::detectors::node_runtime::{NodeLists, SharedNodeLists};
use crate::unit::AlertTypeMeta;
use crate::unit::LearningState;
use crate::unit::{Event, Finding};
use crate::unit::{PodContext, WindowedDetector};

// The learned halves of three node match types: their metadata is declared beside the rule halves.
use crate::detectors::node_runtime::{IMDS_CALL, KUBERNETES_API, PASSWORD_FILE_ACCESS as PASSWORD_FILE};

/// An endpoint as configured: `address:port`, or `:port` for any address on that port.
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

/// The executables of each workload that connect to some endpoints.
#[derive(Clone)]
pub struct DestinationBaseline {
    meta: &'static AlertTypeMeta,
    why: &'static str,
    profiles: Profiles,
    endpoints: Vec<Endpoint>,
}

impl DestinationBaseline {
    /// Processes that reach the API server (`detect.baselines.api_server_addresses`).
    pub fn kubernetes_api(config: &BaselinesConfig) -> Result<Self, String> {
        let endpoints = config.api_server_addresses.iter().map(|e| parse_endpoint(e)).collect::<Result<_, _>>()?;
        let why = "a process this workload did not use to reach the API server";
        Ok(Self { meta: KUBERNETES_API, why, profiles: Profiles::new(config.kubernetes_api), endpoints })
    }

    /// Processes that reach the cloud metadata service: port 80 of the node lists' `metadata_addresses` (the
    /// one list the IMDS rule reads too), as they are when the detector is built.
    pub fn metadata_service(config: &BaselinesConfig, lists: &NodeLists) -> Self {
        let endpoints = lists
            .metadata_addresses
            .iter()
            .filter_map(|address| Some(Endpoint { address: Some(address.parse().ok()?), port: 80 }))
            .collect();
        let why = "a process this workload did not use to reach the cloud metadata service";
        Self { meta: IMDS_CALL, why, profiles: Profiles::new(config.metadata_service), endpoints }
    }

    fn is_endpoint(&self, address: &str, port: i64) -> bool {
        let address: Option<IpAddr> = address.parse().ok();
        self.endpoints.iter().any(|e| e.port == port && (e.address.is_none() || e.address == address))
    }
}

fn executable(node: &NodeEvent) -> String {
    node.executable.clone().unwrap_or_else(|| node.comm.clone())
}

fn new_process_finding(verdict: Verdict, executable: String) -> Option<Finding> {
    let Verdict::New { learned_since_ms, known_operations } = verdict else { return None };
    let mut finding = Finding { subject: format!("baseline {executable}"), ..Finding::default() };
    finding.details.insert("process".into(), executable);
    finding.details.insert("learned_since_ms".into(), learned_since_ms.to_string());
    finding.details.insert("known_processes".into(), known_operations.to_string());
    Some(finding)
}

impl WindowedDetector for DestinationBaseline {
    fn state_key(&self) -> crate::unit::StateKey {
        crate::unit::StateKey::PodNamespace
    }

    fn meta(&self) -> &'static AlertTypeMeta {
        self.meta
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
        if !self.is_endpoint(address, port) {
            return Vec::new();
        }
        let executable = executable(node);
        let key = format!("{}/{}", context.namespace, context.workload);
        let verdict = self.profiles.observe(&key, &executable, node.timestamp_ms);
        let Some(mut finding) = new_process_finding(verdict, executable) else { return Vec::new() };
        finding.details.insert("why".into(), self.why.into());
        finding.details.insert("destination".into(), format!("{address}:{port}"));
        vec![(self.meta, finding)]
    }

    profile_state!();
}

/// The baseline half of K8S.NODE_SuspectPasswordFileAccess: the executables that read the shadow files, per
/// workload (containers whose pod is known) or per node (host processes), besides the shipped readers.
pub struct ShadowReaderBaseline {
    profiles: Profiles,
    lists: SharedNodeLists,
}

impl ShadowReaderBaseline {
    pub fn new(config: &BaselinesConfig, lists: SharedNodeLists) -> Self {
        Self { profiles: Profiles::new(config.shadow_readers), lists }
    }
}

impl WindowedDetector for ShadowReaderBaseline {
    fn state_key(&self) -> crate::unit::StateKey {
        crate::unit::StateKey::PodNamespace
    }

    fn meta(&self) -> &'static AlertTypeMeta {
        PASSWORD_FILE
    }

    fn observe(&mut self, _event: &Event<'_>) -> Vec<Finding> {
        Vec::new()
    }

    fn observe_in(
        &mut self,
        event: &Event<'_>,
        context: Option<&PodContext>,
    ) -> Vec<(&'static AlertTypeMeta, Finding)> {
        let Event::Node(node) = event else { return Vec::new() };
        if node.kind != NodeEventKind::FileOpen {
            return Vec::new();
        }
        let Some(path) = node.file.as_ref().map(|f| f.path.as_str()) else { return Vec::new() };
        if path != "/etc/shadow" && path != "/etc/gshadow" {
            return Vec::new();
        }
        let executable = executable(node);
        let name = executable.rsplit('/').next().unwrap_or_default();
        if self.lists.current().shadow_readers.contains(name) {
            return Vec::new();
        }
        let key = match (node.in_container, context) {
            (false, _) => format!("node/{}", node.node),
            (true, Some(context)) => format!("{}/{}", context.namespace, context.workload),
            (true, None) => return Vec::new(),
        };
        let verdict = self.profiles.observe(&key, &executable, node.timestamp_ms);
        let Some(mut finding) = new_process_finding(verdict, executable) else { return Vec::new() };
        finding.details.insert("why".into(), "a process that did not read the shadow files here before".into());
        finding.details.insert("file".into(), path.to_owned());
        vec![(PASSWORD_FILE, finding)]
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

    fn config() -> BaselinesConfig {
        let learning = BaselineConfig { learning_secs: 60, ..BaselineConfig::default() };
        BaselinesConfig {
            kubernetes_api: learning,
            metadata_service: learning,
            shadow_readers: learning,
            ..BaselinesConfig::default()
        }
    }

    fn detector() -> DestinationBaseline {
        DestinationBaseline::kubernetes_api(&config()).unwrap()
    }

    fn fire(detector: &mut dyn WindowedDetector, event: &NodeEvent, context: Option<&PodContext>) -> usize {
        detector.observe_in(&Event::Node(event), context).len()
    }

    #[test]
    fn a_new_process_of_a_workload_reaching_the_metadata_service_after_learning_fires_once() {
        let mut detector = DestinationBaseline::metadata_service(&config(), &NodeLists::shipped());
        let web = context("web");
        assert_eq!(fire(&mut detector, &connect("/app/agent", "169.254.169.254", 80, 0), Some(&web)), 0, "learning");
        assert_eq!(fire(&mut detector, &connect("/app/agent", "169.254.169.254", 80, 90_000), Some(&web)), 0, "known");
        let findings =
            detector.observe_in(&Event::Node(&connect("/bin/nc", "169.254.169.254", 80, 91_000)), Some(&web));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].0.id, "K8S.NODE_ImdsCall");
        assert_eq!(findings[0].1.details["destination"], "169.254.169.254:80");
        assert_eq!(fire(&mut detector, &connect("/bin/nc", "fd00:ec2::254", 80, 92_000), Some(&web)), 0, "now known");
        assert_eq!(fire(&mut detector, &connect("/bin/wget", "fd00:ec2::254", 80, 93_000), Some(&web)), 1, "IPv6");
        // Another port of the address, the API server: not the metadata service.
        assert_eq!(fire(&mut detector, &connect("/bin/sh", "169.254.169.254", 8080, 94_000), Some(&web)), 0);
        assert_eq!(fire(&mut detector, &connect("/bin/sh", "10.96.0.1", 443, 94_000), Some(&web)), 0);
    }

    fn shadow_read(executable: &str, in_container: bool, at_ms: i64) -> NodeEvent {
        let mut event = connect(executable, "0.0.0.0", 0, at_ms);
        event.kind = NodeEventKind::FileOpen;
        event.net = None;
        event.in_container = in_container;
        event.file = Some(palisade_schemas::FileDetail {
            path: "/etc/shadow".into(),
            new_path: None,
            flags: 0,
            mode: None,
            owner_uid: None,
            owner_gid: None,
            atime_ns: None,
            mtime_ns: None,
        });
        event
    }

    #[test]
    fn a_new_shadow_reader_after_learning_fires_once_per_node_or_workload() {
        let mut detector = ShadowReaderBaseline::new(&config(), SharedNodeLists::fixed(NodeLists::shipped()));
        assert_eq!(fire(&mut detector, &shadow_read("/opt/backup-agent", false, 0), None), 0, "learning");
        assert_eq!(fire(&mut detector, &shadow_read("/opt/backup-agent", false, 90_000), None), 0, "known");
        let findings = detector.observe_in(&Event::Node(&shadow_read("/tmp/.x/dump", false, 91_000)), None);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].0.id, "K8S.NODE_SuspectPasswordFileAccess");
        assert_eq!(findings[0].1.details["file"], "/etc/shadow");
        assert_eq!(fire(&mut detector, &shadow_read("/tmp/.x/dump", false, 92_000), None), 0, "once");
        // The shipped readers are never profiled nor reported; a container needs its pod to be profiled.
        assert_eq!(fire(&mut detector, &shadow_read("/usr/sbin/unix_chkpwd", false, 93_000), None), 0);
        assert_eq!(fire(&mut detector, &shadow_read("/opt/backup-agent", true, 93_000), None), 0);
        // A workload learns for itself.
        let db = context("db");
        assert_eq!(fire(&mut detector, &shadow_read("/opt/backup-agent", true, 94_000), Some(&db)), 0, "learning");
        assert_eq!(fire(&mut detector, &shadow_read("/tmp/.x/dump", true, 200_000), Some(&db)), 1);
        // Another file is not its business.
        let mut passwd = shadow_read("/tmp/.x/other", false, 200_000);
        passwd.file.as_mut().unwrap().path = "/etc/passwd".into();
        assert_eq!(fire(&mut detector, &passwd, None), 0);
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
