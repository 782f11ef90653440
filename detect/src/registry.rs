//! The one explicit list of implemented detectors.

use std::time::Duration;

use crate::config::{DetectConfig, DetectConfigError};
use crate::detectors;
use crate::detectors::baselines::{
    AbnormalMiActivity, DestinationBaseline, KubeSystemContainer, ServiceAccountRareOperation, ShadowReaderBaseline,
};
use crate::detectors::cluster_state::ClusterJoins;
use crate::detectors::node_runtime::{NodeLists, NodeRules, SharedNodeLists};
use crate::detectors::node_windows::{BackdoorArtifact, ReconBurst};
use crate::engine::StatelessDetector;
use crate::ip_list::{IpList, ReloadingIpList};
use crate::windowed::WindowedDetector;

/// Every implemented detector, built with what the configuration gives them (lists, windows).
pub struct Registered {
    pub stateless: Vec<Box<dyn StatelessDetector>>,
    pub windowed: Vec<Box<dyn WindowedDetector>>,
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
            .map_err(|e| DetectConfigError::List(format!("node lists in {}: {e}", dir.display())))?,
        None => SharedNodeLists::fixed(NodeLists::shipped()),
    };
    let mut detectors: Vec<Box<dyn StatelessDetector>> = vec![
        Box::new(detectors::ti_proxy::TiProxy { list: proxy_list }),
        Box::new(detectors::privileged_container::PrivilegedContainer),
        Box::new(detectors::sensitive_mount::SensitiveMount),
        Box::new(detectors::malicious_image::MaliciousContainerImage),
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
    let windowed: Vec<Box<dyn WindowedDetector>> = vec![
        Box::new(ReconBurst::new(config.windows, node_lists.clone())),
        Box::new(BackdoorArtifact::new(config.windows)),
        Box::new(ServiceAccountRareOperation::new(config.baselines.service_accounts)),
        Box::new(KubeSystemContainer::new(&config.baselines)),
        Box::new(AbnormalMiActivity::new(&config.baselines)),
        Box::new(ClusterJoins::new()),
        Box::new(detectors::kube_hunter::KubeHunter::new(config.windows)),
        Box::new(DestinationBaseline::kubernetes_api(&config.baselines).map_err(DetectConfigError::List)?),
        Box::new(DestinationBaseline::metadata_service(&config.baselines)),
        Box::new(ShadowReaderBaseline::new(&config.baselines)),
    ];
    Ok(Registered { stateless: detectors, windowed })
}

/// Catalogue alert types that have no detector yet. Kept explicit so the gap is visible and the test below fails
/// when a detector is added without updating it (or one disappears).
pub const NOT_YET_IMPLEMENTED: &[&str] = &[];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::catalogue::CATALOGUE;

    #[test]
    fn catalogue_has_58_unique_ids_each_with_tactics_and_techniques() {
        let ids: BTreeSet<&str> = CATALOGUE.iter().map(|m| m.id).collect();
        assert_eq!(CATALOGUE.len(), 58);
        assert_eq!(ids.len(), 58, "duplicate IDs in the catalogue");
        for meta in CATALOGUE {
            assert!(!meta.tactics.is_empty() && !meta.techniques.is_empty(), "{}", meta.id);
            assert!(meta.techniques.iter().all(|t| t.starts_with('T')), "{}", meta.id);
        }
    }

    #[test]
    fn registered_detectors_are_unique_and_every_catalogue_id_is_accounted_for() {
        let registered = detectors(&DetectConfig::default()).unwrap().ids();
        let unique: BTreeSet<&str> = registered.iter().copied().collect();
        // Three node types have a rule and a learned baseline ("unusual for that workload").
        for id in ["K8S.NODE_KubernetesAPI", "K8S.NODE_ImdsCall", "K8S.NODE_SuspectPasswordFileAccess"] {
            let shared = registered.iter().filter(|registered| **registered == id).count();
            assert_eq!(shared, 2, "{id}: its match rule and its baseline");
        }
        assert_eq!(unique.len(), registered.len() - 3, "no other detectors share an ID");
        for id in &registered {
            assert!(!NOT_YET_IMPLEMENTED.contains(id), "{id} is implemented; remove it from NOT_YET_IMPLEMENTED");
        }
        for meta in CATALOGUE {
            assert!(
                unique.contains(meta.id) || NOT_YET_IMPLEMENTED.contains(&meta.id),
                "{} has neither a detector nor a NOT_YET_IMPLEMENTED entry",
                meta.id
            );
        }
    }
}
