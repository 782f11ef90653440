//! The pod table: what enrich knows of each pod (from the list/watch in `state.rs`), looked up by pod UID or
//! container ID to complete a detection.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use palisade_schemas::Detection;
use serde_json::Value;

/// What enrich knows of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `Kind/name` of the pod's first owner reference, else `Pod/<name>` (the form detect uses).
    pub workload: String,
    /// The image of each started container, by container ID (without the `containerd://` scheme).
    pub containers: Vec<(String, String)>,
    /// The image, when the pod has one container.
    pub single_image: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Reads a pod object as the API server returns it; `None` if it has no UID, name or namespace.
pub fn pod_record(pod: &Value) -> Option<PodRecord> {
    let text = |pointer: &str| pod.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let uid = text("/metadata/uid")?;
    let name = text("/metadata/name")?;
    let namespace = text("/metadata/namespace")?;
    let workload = pod
        .pointer("/metadata/ownerReferences/0")
        .and_then(|owner| Some(format!("{}/{}", owner.get("kind")?.as_str()?, owner.get("name")?.as_str()?)))
        .unwrap_or_else(|| format!("Pod/{name}"));
    let mut images: HashMap<&str, &str> = HashMap::new();
    let mut regular = 0;
    for (list, counts) in [("containers", true), ("initContainers", false), ("ephemeralContainers", false)] {
        for container in pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten() {
            if let (Some(name), Some(image)) =
                (container.get("name").and_then(Value::as_str), container.get("image").and_then(Value::as_str))
            {
                images.insert(name, image);
                regular += usize::from(counts);
            }
        }
    }
    let single_image = match pod.pointer("/spec/containers").and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) if regular == 1 => only.get("image").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let mut containers = Vec::new();
    for list in ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"] {
        for status in pod.pointer(&format!("/status/{list}")).and_then(Value::as_array).into_iter().flatten() {
            let Some(id) = status.get("containerID").and_then(Value::as_str).map(container_id) else { continue };
            let name = status.get("name").and_then(Value::as_str).unwrap_or_default();
            // The image the pod asked for, as written (the status holds the resolved one, often a digest).
            let image =
                images.get(name).copied().or_else(|| status.get("image").and_then(Value::as_str)).unwrap_or_default();
            if !id.is_empty() {
                containers.push((id.to_owned(), image.to_owned()));
            }
        }
    }
    let labels = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| labels.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    Some(PodRecord { uid, namespace, name, workload, containers, single_image, labels })
}

/// A container ID without its runtime scheme (`containerd://…`, `cri-o://…`, `docker://…`), as collectors
/// read it from the cgroup path.
fn container_id(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

#[derive(Default)]
struct Tables {
    pods: HashMap<String, PodRecord>,
    /// Container ID → pod UID.
    containers: HashMap<String, String>,
}

impl Tables {
    fn insert(&mut self, pod: PodRecord) {
        self.remove(&pod.uid);
        for (id, _) in &pod.containers {
            self.containers.insert(id.clone(), pod.uid.clone());
        }
        self.pods.insert(pod.uid.clone(), pod);
    }

    fn remove(&mut self, uid: &str) {
        if let Some(old) = self.pods.remove(uid) {
            for (id, _) in &old.containers {
                self.containers.remove(id);
            }
        }
    }
}

/// The pod table, shared between the watch task (writer) and the enrich stage (reader).
pub struct ClusterView {
    tables: RwLock<Tables>,
    synced: AtomicBool,
}

impl Default for ClusterView {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterView {
    pub fn new() -> Self {
        Self { tables: RwLock::default(), synced: AtomicBool::new(false) }
    }

    /// True while the table follows the API server (listed, and the watch is connected): only then can waiting
    /// for a pod help.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn pods(&self) -> usize {
        self.tables.read().unwrap_or_else(|poisoned| poisoned.into_inner()).pods.len()
    }

    pub(crate) fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Release);
    }

    /// Replaces the whole table (after a list).
    pub fn replace(&self, pods: Vec<PodRecord>) {
        let mut tables = Tables::default();
        for pod in pods {
            tables.insert(pod);
        }
        *self.tables.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = tables;
    }

    pub fn upsert(&self, pod: PodRecord) {
        self.tables.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(pod);
    }

    pub fn remove(&self, uid: &str) {
        self.tables.write().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(uid);
    }

    /// Fills the detection's missing namespace, pod, workload and image from the pod it ran in (by pod UID, else
    /// by container ID). Returns whether the pod was found.
    pub fn fill(&self, detection: &mut Detection) -> bool {
        let tables = self.tables.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let by_container = || {
            let id = detection.container_id.as_deref()?;
            tables.pods.get(tables.containers.get(id)?)
        };
        let Some(pod) = detection.pod_uid.as_deref().and_then(|uid| tables.pods.get(uid)).or_else(by_container) else {
            return false;
        };
        let image = detection
            .container_id
            .as_deref()
            .and_then(|id| pod.containers.iter().find(|(c, _)| c == id))
            .map(|(_, image)| image.clone())
            .filter(|image| !image.is_empty())
            .or_else(|| pod.single_image.clone());
        detection.namespace.get_or_insert_with(|| pod.namespace.clone());
        detection.pod.get_or_insert_with(|| pod.name.clone());
        detection.workload.get_or_insert_with(|| pod.workload.clone());
        if detection.image.is_none() {
            detection.image = image;
        }
        if detection.pod_labels.is_empty() {
            detection.pod_labels.clone_from(&pod.labels);
        }
        true
    }
}

/// Whether a detection is a container alert that lacks pod context (what enrich looks up, or waits for).
pub fn lacks_context(detection: &Detection) -> bool {
    detection.in_container == Some(true)
        && (detection.namespace.is_none()
            || detection.pod.is_none()
            || detection.workload.is_none()
            || detection.image.is_none())
}
