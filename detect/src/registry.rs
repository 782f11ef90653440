//! The one explicit list of implemented detectors.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{DetectConfig, DetectConfigError};
use crate::detectors;
use crate::detectors::baselines::{
    AbnormalMiActivity, DestinationBaseline, KubeSystemContainer, ServiceAccountRareOperation, ShadowReaderBaseline,
};
use crate::detectors::exposed::ClusterJoins;
use crate::detectors::node_runtime::{NodeLists, NodeRules, SharedNodeLists};
use crate::detectors::node_windows::{BackdoorArtifact, PipeToShell, ReconBurst};
use crate::ip_list::{IpList, ReloadingIpList};
use crate::lists;
use crate::unit::StatelessDetector;
use crate::unit::WindowedDetector;

/// Builds a fresh, empty set of the windowed detectors: one set per shard of the input (a Kafka partition),
/// sharing the lists the configuration loaded once.
pub type WindowedFactory = Arc<dyn Fn() -> Vec<Box<dyn WindowedDetector>> + Send + Sync>;

/// Every implemented detector, built with what the configuration gives them (lists, windows).
pub struct Registered {
    pub stateless: Vec<Box<dyn StatelessDetector>>,
    pub windowed: Vec<Box<dyn WindowedDetector>>,
    /// More empty sets of `windowed`, for an engine that keeps one per shard; without it every shard shares one.
    pub fresh_windowed: Option<WindowedFactory>,
}

impl Registered {
    pub fn ids(&self) -> Vec<&'static str> {
        let stateless = self.stateless.iter().flat_map(|d| d.metas()).map(|meta| meta.id);
        stateless.chain(self.windowed.iter().flat_map(|d| d.metas()).map(|meta| meta.id)).collect()
    }
}

pub fn detectors(config: &DetectConfig) -> Result<Registered, DetectConfigError> {
    let proxy_list = match &config.proxy_list_path {
        Some(path) => ReloadingIpList::from_file(path, Duration::from_secs(config.proxy_list_reload_secs))
            .map_err(DetectConfigError::List)?,
        None => ReloadingIpList::fixed(
            IpList::parse(include_str!("../data/proxy_ips.txt")).map_err(DetectConfigError::List)?,
        ),
    };
    let node_lists = match &config.node_lists_dir {
        Some(dir) => SharedNodeLists::from_dir(dir, Duration::from_secs(config.node_lists_reload_secs))
            .map_err(|e| DetectConfigError::List(format!("node lists in {e}")))?,
        None => SharedNodeLists::fixed(NodeLists::shipped()),
    };
    let audit_lists = lists::audit_lists(config.lists_dir.as_deref(), Duration::from_secs(config.lists_reload_secs))
        .map_err(|e| DetectConfigError::List(format!("control-plane lists in {e}")))?;
    let mut detectors: Vec<Box<dyn StatelessDetector>> = vec![
        Box::new(detectors::ti_proxy::TiProxy { list: proxy_list }),
        Box::new(detectors::privileged_container::PrivilegedContainer),
        Box::new(detectors::sensitive_mount::SensitiveMount { lists: audit_lists.clone() }),
        Box::new(detectors::malicious_image::MaliciousContainerImage { lists: audit_lists.clone() }),
        Box::new(detectors::rbac::ClusterAdminBinding),
        Box::new(detectors::rbac::HighPrivilegesRole),
        Box::new(detectors::control_plane_config::AdmissionController),
        Box::new(detectors::control_plane_config::CoreDnsModification),
        Box::new(detectors::delete_events::DeleteEvents),
        Box::new(detectors::exposed::ExposedDashboard),
        Box::new(detectors::exposed::ExposedRedis),
        Box::new(detectors::exposed::ExposedService),
        Box::new(detectors::exposed::ExposedPostgresBroadIpRange),
        Box::new(detectors::eicar::Eicar),
    ];
    detectors.push(Box::new(NodeRules::new(&node_lists)));
    // Parsed once: the factory cannot fail.
    let kubernetes_api = DestinationBaseline::kubernetes_api(&config.baselines).map_err(DetectConfigError::List)?;
    let (windows, baselines) = (config.windows, config.baselines.clone());
    let fresh: WindowedFactory = Arc::new(move || -> Vec<Box<dyn WindowedDetector>> {
        vec![
            Box::new(ReconBurst::new(windows, node_lists.clone())),
            Box::new(BackdoorArtifact::new(windows, node_lists.clone())),
            Box::new(PipeToShell::new(windows, node_lists.clone())),
            Box::new(ServiceAccountRareOperation::new(baselines.service_accounts)),
            Box::new(KubeSystemContainer::with_lists(&baselines, audit_lists.clone())),
            Box::new(AbnormalMiActivity::new(&baselines)),
            Box::new(ClusterJoins::new()),
            Box::new(detectors::kube_hunter::KubeHunter::new(windows)),
            Box::new(kubernetes_api.clone()),
            Box::new(DestinationBaseline::metadata_service(&baselines, &node_lists.current())),
            Box::new(ShadowReaderBaseline::new(&baselines, node_lists.clone())),
        ]
    });
    Ok(Registered { stateless: detectors, windowed: fresh(), fresh_windowed: Some(fresh) })
}

#[cfg(test)]
mod tests;
