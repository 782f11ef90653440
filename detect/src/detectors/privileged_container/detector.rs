//! K8S_PrivilegedContainer: a workload of any kind is created or changed with a container whose
//! `securityContext.privileged` is true (containers, init containers and ephemeral containers alike).

use serde_json::Value;

use crate::detectors::pod_spec::changed_pod_template;
use crate::engine::{Event, Finding, StatelessDetector};
use crate::meta::{AlertTypeMeta, catalogue_entry};

const META: &AlertTypeMeta = catalogue_entry("K8S_PrivilegedContainer");

pub struct PrivilegedContainer;

impl StatelessDetector for PrivilegedContainer {
    fn meta(&self) -> &'static AlertTypeMeta {
        META
    }

    fn detect(&self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Audit(audit) = event else {
            return Vec::new();
        };
        let Some(template) = changed_pod_template(audit) else {
            return Vec::new();
        };
        template
            .containers()
            .into_iter()
            .filter(|c| c.value.pointer("/securityContext/privileged").and_then(Value::as_bool) == Some(true))
            .map(|container| {
                let mut finding = Finding {
                    subject: format!("{}/{}", container.list, container.name),
                    namespace: template.namespace.clone(),
                    pod: template.workload.strip_prefix("Pod/").map(str::to_owned),
                    workload: Some(template.workload.clone()),
                    image: container.image.map(str::to_owned),
                    ..Finding::default()
                };
                finding.details.insert("container".into(), container.name.to_owned());
                finding.details.insert("container_list".into(), container.list.to_owned());
                finding.details.insert("verb".into(), audit.verb.clone());
                finding
            })
            .collect()
    }
}
