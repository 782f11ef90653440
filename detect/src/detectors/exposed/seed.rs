//! The cluster state the API server's list/watch showed (`palisade.cluster.state`), per cluster: the same tables the
//! joins build from audit events, filled from each object as it is now, so that objects created before Palisade
//! started (which no audit event it saw named) are known to the joins and to node alerts' pod context. Every
//! detect instance reads the whole topic into it; it is not part of the changelog (the topic is its own log).

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard};

use palisade_schemas::{AuditEvent, ClusterObject};

use super::table::Tables;
use crate::unit::PodContext;

/// Kind → (API group, resource) of what the topic carries, for its tombstones (which hold only the key).
const RESOURCES: [(&str, &str, &str); 7] = [
    ("Pod", "", "pods"),
    ("Service", "", "services"),
    ("Namespace", "", "namespaces"),
    ("ConfigMap", "", "configmaps"),
    ("Deployment", "apps", "deployments"),
    ("StatefulSet", "apps", "statefulsets"),
    ("DaemonSet", "apps", "daemonsets"),
];

/// The seeded tables by cluster.
#[derive(Default)]
pub struct ClusterSeed {
    clusters: RwLock<HashMap<String, Tables>>,
}

/// The audit event that would have said what `object` now is (so `Tables::apply` reads it as it reads a real one).
fn written(object: &ClusterObject) -> AuditEvent {
    AuditEvent {
        audit_id: format!("cluster-state:{}@{}", object.key(), object.resource_version),
        cluster: object.cluster.clone(),
        stage: "ResponseComplete".into(),
        level: "RequestResponse".into(),
        verb: "update".into(),
        request_uri: String::new(),
        username: "system:palisade:cluster-state".into(),
        user_groups: Vec::new(),
        impersonated_user: None,
        source_ips: Vec::new(),
        user_agent: None,
        resource: Some(object.resource.clone()),
        subresource: None,
        namespace: object.namespace.clone(),
        name: Some(object.name.clone()),
        api_group: (!object.api_group.is_empty()).then(|| object.api_group.clone()),
        api_version: Some(object.api_version.clone()),
        response_code: Some(200),
        request_object: None,
        response_object: Some(object.object.clone()),
        request_received_ms: 0,
        stage_ms: 0,
        annotations: Default::default(),
        raw: String::new(),
    }
}

impl ClusterSeed {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Tables>> {
        self.clusters.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An object as it now is.
    pub fn apply(&self, object: &ClusterObject) {
        let event = written(object);
        let mut clusters = self.clusters.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tables = clusters.entry(object.cluster.clone()).or_default();
        tables.apply(&event);
    }

    /// The object a tombstone's key (`<cluster>/<Kind>/<namespace>/<name>`) names is gone. A key of another shape
    /// or kind is ignored.
    pub fn forget(&self, key: &str) {
        let mut parts = key.rsplitn(4, '/');
        let (Some(name), Some(namespace), Some(kind), Some(cluster)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Some(&(_, group, resource)) = RESOURCES.iter().find(|(k, _, _)| *k == kind) else { return };
        let mut clusters = self.clusters.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(tables) = clusters.get_mut(cluster) else { return };
        if kind == "Namespace" {
            // Only the namespace: its objects have tombstones of their own, and the topic's partitions are read
            // in no set order, so a namespace made again may already hold new objects here.
            tables.namespaces.remove(name);
            return;
        }
        let object = ClusterObject {
            cluster: cluster.to_owned(),
            kind: kind.to_owned(),
            api_group: group.to_owned(),
            api_version: "v1".into(),
            resource: resource.to_owned(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            name: name.to_owned(),
            uid: String::new(),
            resource_version: String::new(),
            object: String::new(),
        };
        tables.apply(&AuditEvent { verb: "delete".into(), response_object: None, ..written(&object) });
    }

    /// The pod a node event's pod UID names, if the list/watch showed it.
    pub fn pod_context(&self, pod_uid: &str) -> Option<PodContext> {
        self.read().values().find_map(|tables| tables.pods.get(pod_uid).cloned())
    }

    /// Pods known, over every cluster.
    pub fn pods(&self) -> usize {
        self.read().values().map(|tables| tables.pods.len()).sum()
    }
}
