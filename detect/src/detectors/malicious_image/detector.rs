//! K8S_MaliciousContainerImage: a container of any workload kind uses an image whose repository name is a known
//! crypto-miner (`detect/data/miner_images.txt`), whatever the registry or tag.

use crate::detectors::pod_spec::changed_pod_template;
use crate::lists::{SHIPPED_AUDIT_LISTS, SharedAuditLists, image_repository};
use crate::unit::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
use crate::unit::{Event, Finding, StatelessDetector};

pub const META: &AlertTypeMeta = &AlertTypeMeta {
    id: "K8S_MaliciousContainerImage",
    title: "Container created from a crypto-mining image",
    severity: Severity::High,
    tactics: &["Execution"],
    techniques: &["T1204.003", "T1496.001"],
    source: Source::Audit,
    kind: DetectionKind::Match,
    inputs: &[Input::Audit],
    maturity: Maturity::Stable,
    description: "Fires when a container is created from an image associated with crypto-mining (xmrig and friends; configurable list, registry-agnostic matching of repository and tag).",
    false_positives: "security teams' own miner-detection test images. Except by `image`.",
    audit_level: Some(REQUEST_RESPONSE_ON_OBJECTS),
    learned: None,
    windowed: None,
    unit: file!(),
};

/// Reads `miner_images` of the control-plane lists.
pub struct MaliciousContainerImage {
    pub lists: SharedAuditLists,
}

impl Default for MaliciousContainerImage {
    /// With the shipped lists.
    fn default() -> Self {
        Self { lists: SHIPPED_AUDIT_LISTS.clone() }
    }
}

fn miner_name<'a>(miners: &'a [String], image: &str) -> Option<&'a str> {
    let repository = image_repository(image).to_lowercase();
    let last = repository.rsplit('/').next().unwrap_or(&repository).to_owned();
    miners.iter().map(String::as_str).find(|name| last == *name || last.starts_with(&format!("{name}-")))
}

impl StatelessDetector for MaliciousContainerImage {
    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else { return Vec::new() };
        let Some(template) = changed_pod_template(audit) else { return Vec::new() };
        let lists = self.lists.current();
        template
            .containers()
            .into_iter()
            .filter_map(|container| {
                let image = container.image?;
                let miner = miner_name(&lists.miner_images, image)?;
                let mut finding = Finding {
                    subject: format!("{}/{}", container.list, container.name),
                    namespace: template.namespace.clone(),
                    pod: template.workload.strip_prefix("Pod/").map(str::to_owned),
                    workload: Some(template.workload.clone()),
                    image: Some(image.to_owned()),
                    ..Finding::default()
                };
                finding.details.insert("container".into(), container.name.to_owned());
                finding.details.insert("matched_miner".into(), miner.to_owned());
                Some(finding)
            })
            .collect()
    }
}
