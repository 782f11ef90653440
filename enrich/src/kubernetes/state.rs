//! The cluster-state list/watch: the API server's pods, services, namespaces, workloads and the config maps that
//! hold trust settings, as `ClusterObject` records for the compacted `palisade.cluster.state` topic. kube's runtime
//! watcher lists page by page, resumes a watch from the last version it saw (bookmarks included) and relists only
//! when that version has expired; a relist's objects are compared with what was written before, so an object
//! deleted while no watch ran gets its tombstone too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt as _, watcher};
use palisade_schemas::bounds::TRUNCATED_FROM_BYTES;
use palisade_schemas::{ClusterObject, object_key};
use palisade_telemetry::{PodWatchRestarted, PodWatchState};
use serde_json::Value;

use super::{ClusterView, KubernetesConfig, PodRecord, WatchError, pod_record};

/// What the table needs, by (group, version, kind, plural, namespaced). Roles and bindings are not watched: no
/// reader of the table uses them yet.
const KINDS: [(&str, &str, &str, &str); 7] = [
    ("", "v1", "Pod", "pods"),
    ("", "v1", "Service", "services"),
    ("", "v1", "Namespace", "namespaces"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
];

/// The variable and file the exposure joins look for in a config map; a config map with neither is not written
/// (most config maps are application settings the table has no use for, and some hold what should be secret).
const TRUST_VARIABLE: &str = "POSTGRES_HOST_AUTH_METHOD";

/// One record for the topic: the object now, or `None` when it is gone (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    pub key: String,
    pub object: Option<ClusterObject>,
}

/// Records waiting for the topic, newest per key: the watch never waits for the bus (so enrich's pod lookups go on
/// while Kafka is away), and what waits is bounded by the cluster's objects, since a newer version of an object
/// replaces the one not sent yet.
#[derive(Default)]
pub struct PendingRecords {
    records: std::sync::Mutex<BTreeMap<String, Option<ClusterObject>>>,
    added: tokio::sync::Notify,
}

impl PendingRecords {
    fn push(&self, record: StateRecord) {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(record.key, record.object);
        self.added.notify_one();
    }

    /// Every waiting record (at most one per key), once there is one.
    pub async fn take(&self) -> Vec<StateRecord> {
        loop {
            let taken = std::mem::take(&mut *self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
            if !taken.is_empty() {
                return taken.into_iter().map(|(key, object)| StateRecord { key, object }).collect();
            }
            self.added.notified().await;
        }
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The watch of every kind in `KINDS`, built (so its addresses and credential files checked) at start-up.
pub struct ClusterStateWatcher {
    client: kube::Client,
    cluster: String,
    page_size: u32,
    /// Keys written and not deleted since, by kind, with a hash of what was written (0: read back, unknown): a
    /// relist tombstones those it no longer holds, and an object whose record would not change (a pod's status
    /// heartbeat, a new resource version) is not written again.
    written: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Keys seen by the relist under way, by kind.
    relisting: BTreeMap<&'static str, BTreeSet<String>>,
    /// Enrich's own pod table, kept by this watch as well: replaced at each pod list, marked not synced from a
    /// failure of the pod watch until its next event.
    view: Option<Arc<ClusterView>>,
    listed_pods: Vec<PodRecord>,
    /// Whether a pod list completed (before it, the table is not synced whatever the events say).
    pods_listed: bool,
    /// Seconds after which the server ends each watch (it is then resumed).
    watch_timeout_secs: u32,
}

impl ClusterStateWatcher {
    pub fn new(config: &KubernetesConfig, cluster: &str) -> Result<Self, WatchError> {
        let (base, token_path, ca_path) = config.resolved()?;
        let url = base.parse().map_err(|e| WatchError::Config(format!("api_server {base}: {e}")))?;
        let mut client_config = kube::Config::new(url);
        client_config.connect_timeout = Some(std::time::Duration::from_secs(10));
        client_config.read_timeout = Some(std::time::Duration::from_secs(config.watch_timeout_secs + 60));
        let exists = |path: &std::path::PathBuf, what: &str| {
            std::fs::metadata(path).map_err(|e| WatchError::Config(format!("{what} {}: {e}", path.display())))
        };
        if let Some(path) = &ca_path {
            exists(path, "CA")?;
            client_config.root_cert_file = Some(path.clone());
        }
        if let Some(path) = &token_path {
            exists(path, "token file")?;
            client_config.auth_info.token_file = Some(path.display().to_string());
        }
        match (&config.client_cert_path, &config.client_key_path) {
            (Some(cert), Some(key)) => {
                exists(cert, "client certificate")?;
                exists(key, "client key")?;
                client_config.auth_info.client_certificate = Some(cert.display().to_string());
                client_config.auth_info.client_key = Some(key.display().to_string());
            }
            (None, None) => {}
            _ => return Err(WatchError::Config("client_cert_path and client_key_path go together".into())),
        }
        let client = kube::Client::try_from(client_config).map_err(|e| WatchError::Config(e.to_string()))?;
        Ok(Self {
            client,
            cluster: cluster.to_owned(),
            page_size: config.page_size.max(1),
            written: BTreeMap::new(),
            relisting: BTreeMap::new(),
            view: None,
            listed_pods: Vec::new(),
            pods_listed: false,
            watch_timeout_secs: u32::try_from(config.watch_timeout_secs.clamp(1, 3600)).unwrap_or(300),
        })
    }

    /// Keeps `view` (enrich's pod lookups) equal to the pods this watch sees.
    pub fn with_view(mut self, view: Arc<ClusterView>) -> Self {
        self.view = Some(view);
        self
    }

    /// Keys already on the topic (read back at start): a first list that lacks one tombstones it.
    pub fn already_written(&mut self, keys: impl IntoIterator<Item = String>) {
        let prefix = format!("{}/", self.cluster);
        for key in keys {
            let Some(kind) = key.strip_prefix(&prefix).and_then(|rest| rest.split('/').next()) else { continue };
            if let Some((_, _, kind, _)) = KINDS.iter().find(|(_, _, k, _)| *k == kind) {
                self.written.entry(kind).or_default().insert(key, 0);
            }
        }
    }

    /// Follows every kind until the returned future is dropped, leaving each record in `out`; a list or watch that
    /// fails is retried with kube's default back-off, counted.
    pub async fn run(mut self, out: Arc<PendingRecords>) {
        let streams = KINDS.iter().map(|&(group, version, kind, plural)| {
            let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            let config = watcher::Config::default().page_size(self.page_size).timeout(self.watch_timeout_secs);
            watcher(api, config).default_backoff().map(move |event| (kind, event)).boxed()
        });
        let mut events = futures::stream::select_all(streams);
        while let Some((kind, event)) = events.next().await {
            match event {
                Ok(event) => {
                    for record in self.apply(kind, event) {
                        out.push(record);
                    }
                }
                Err(error) => self.failed(kind, &error.to_string()),
            }
        }
    }

    /// A list or watch of `kind` failed (kube retries it): counted, and enrich's pod table is not synced until the
    /// pod watch's next event.
    fn failed(&self, kind: &str, error: &str) {
        if let Some(view) = self.view.as_ref().filter(|_| kind == "Pod") {
            view.set_synced(false);
            PodWatchState { pods: view.pods(), synced: false }.emit();
        }
        PodWatchRestarted { reason: "error", error: Some(&format!("{kind}: {error}")) }.emit();
    }

    /// The records one watch event makes. Its object is made JSON once, for the pod table and the record both.
    fn apply(&mut self, kind: &'static str, event: watcher::Event<DynamicObject>) -> Vec<StateRecord> {
        let json = |object: DynamicObject| serde_json::to_value(object).unwrap_or_default();
        let event = match event {
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitApply(object) => watcher::Event::InitApply(json(object)),
            watcher::Event::InitDone => watcher::Event::InitDone,
            watcher::Event::Apply(object) => watcher::Event::Apply(json(object)),
            watcher::Event::Delete(object) => watcher::Event::Delete(json(object)),
        };
        if kind == "Pod" {
            self.apply_to_view(&event);
        }
        match event {
            watcher::Event::Init => {
                self.relisting.insert(kind, BTreeSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                let key = self.key_of(kind, &object);
                let record = self.record(kind, object);
                let kept = key.filter(|key| self.written.get(kind).is_some_and(|written| written.contains_key(key)));
                if let (Some(seen), Some(key)) = (self.relisting.get_mut(kind), kept) {
                    seen.insert(key);
                }
                record.into_iter().collect()
            }
            watcher::Event::InitDone => {
                let seen = self.relisting.remove(kind).unwrap_or_default();
                let written = self.written.entry(kind).or_default();
                let gone: Vec<String> = written.keys().filter(|key| !seen.contains(*key)).cloned().collect();
                written.retain(|key, _| seen.contains(key));
                tracing::info!(kind, objects = seen.len(), gone = gone.len(), "cluster-state list loaded; watching");
                gone.into_iter().map(|key| StateRecord { key, object: None }).collect()
            }
            watcher::Event::Apply(object) => self.record(kind, object).into_iter().collect(),
            // Always a tombstone: the topic may hold the key though this watch did not write it (another replica,
            // or a start whose read-back failed).
            watcher::Event::Delete(object) => {
                let Some(key) = self.key_of(kind, &object) else { return Vec::new() };
                self.written.entry(kind).or_default().remove(&key);
                vec![StateRecord { key, object: None }]
            }
        }
    }

    /// The pods of `event` into enrich's table: a list replaces it whole once complete.
    fn apply_to_view(&mut self, event: &watcher::Event<Value>) {
        let Some(view) = &self.view else { return };
        match event {
            watcher::Event::Init => self.listed_pods.clear(),
            watcher::Event::InitApply(object) => self.listed_pods.extend(pod_record(object)),
            watcher::Event::InitDone => {
                view.replace(std::mem::take(&mut self.listed_pods));
                self.pods_listed = true;
                tracing::info!(pods = view.pods(), "pod list loaded; watching");
            }
            watcher::Event::Apply(object) => {
                if let Some(pod) = pod_record(object) {
                    view.upsert(pod);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(uid) = object.pointer("/metadata/uid").and_then(Value::as_str) {
                    view.remove(uid);
                }
            }
        }
        // kube resumes a failed watch without a new list: its next event says it follows again.
        if self.pods_listed && !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
            view.set_synced(true);
        }
        PodWatchState { pods: view.pods(), synced: view.synced() }.emit();
    }

    fn key_of(&self, kind: &str, object: &Value) -> Option<String> {
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str);
        Some(object_key(&self.cluster, kind, namespace, object.pointer("/metadata/name").and_then(Value::as_str)?))
    }

    /// A tombstone for `key` if it was written.
    fn forget(&mut self, kind: &'static str, key: String) -> Option<StateRecord> {
        let written = self.written.entry(kind).or_default().remove(&key);
        written.map(|_| StateRecord { key, object: None })
    }

    /// The record of an object now (a config map without trust settings: a tombstone if it had them before);
    /// none when it would say what the last one said.
    fn record(&mut self, kind: &'static str, object: Value) -> Option<StateRecord> {
        use std::hash::{Hash as _, Hasher as _};
        let key = self.key_of(kind, &object)?;
        let Some(object) = cluster_object(&self.cluster, kind, object) else { return self.forget(kind, key) };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        object.object.hash(&mut hasher);
        let hash = hasher.finish().max(1);
        if self.written.entry(kind).or_default().insert(key.clone(), hash) == Some(hash) {
            return None;
        }
        Some(StateRecord { key, object: Some(object) })
    }
}

/// Longest object JSON a record carries; a larger one (an attacker's padding: annotations, labels, long names)
/// is cut to its identity (`object_stub`), so the topic's record bound is never met and the table keeps the
/// object, without what was cut.
const MAX_OBJECT_BYTES: usize = 256 << 10;

/// The record of one listed or watched object (its JSON); `None` for a config map the table has no use for.
fn cluster_object(cluster: &str, kind: &str, mut value: Value) -> Option<ClusterObject> {
    let &(group, version, kind, plural) = KINDS.iter().find(|(_, _, k, _)| *k == kind)?;
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    let name = text("/metadata/name")?;
    let namespace = text("/metadata/namespace");
    let uid = text("/metadata/uid").unwrap_or_default();
    let resource_version = text("/metadata/resourceVersion").unwrap_or_default();
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        trim_metadata(metadata, kind == "Service");
    }
    if kind == "ConfigMap" && !keep_trust_settings(&mut value) {
        return None;
    }
    if kind != "Pod"
        && let Some(fields) = value.as_object_mut()
    {
        // Only a pod's status (its containers' IDs) is read; a workload's churns and says nothing the table needs.
        fields.remove("status");
    }
    match kind {
        "Pod" => trim_pod(&mut value, false),
        "Deployment" | "StatefulSet" | "DaemonSet" => {
            if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
                spec.retain(|field, _| matches!(field.as_str(), "selector" | "replicas" | "template"));
                if let Some(template) = spec.get_mut("template") {
                    trim_pod(template, true);
                }
            }
        }
        _ => {}
    }
    if let Some(fields) = value.as_object_mut() {
        let api_version = if group.is_empty() { version.into() } else { format!("{group}/{version}") };
        fields.insert("apiVersion".into(), Value::String(api_version));
        fields.insert("kind".into(), Value::String(kind.into()));
    }
    let mut text = value.to_string();
    if text.len() > MAX_OBJECT_BYTES {
        text = object_stub(&value, text.len()).to_string();
    }
    Some(ClusterObject {
        cluster: cluster.to_owned(),
        kind: kind.to_owned(),
        api_group: group.to_owned(),
        api_version: version.to_owned(),
        resource: plural.to_owned(),
        namespace,
        name,
        uid,
        resource_version,
        object: text,
    })
}

/// The metadata the table reads: name, namespace, UID, labels, owners, and of a Service the load-balancer
/// annotations (an internal load balancer is not an exposure). The resource version is the record's own field, so
/// an object whose content did not change writes the same JSON.
fn trim_metadata(metadata: &mut serde_json::Map<String, Value>, service: bool) {
    metadata.retain(|field, _| {
        matches!(field.as_str(), "name" | "namespace" | "uid" | "labels" | "ownerReferences")
            || (service && field == "annotations")
    });
    if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.retain(|key, _| key.contains("load-balancer"));
    }
}

/// An object over `MAX_OBJECT_BYTES`: its kind, name, namespace, UID and owners, its labels if they fit, and how
/// large it was (`palisade.io/truncated-from-bytes`, as a shrunk audit event says).
fn object_stub(value: &Value, bytes: usize) -> Value {
    let metadata = value.get("metadata").cloned().unwrap_or_default();
    let images = |containers: Option<&Value>| -> Value {
        let list = containers.and_then(Value::as_array).into_iter().flatten();
        list.map(|c| serde_json::json!({"name": c["name"], "image": c["image"]})).collect::<Vec<_>>().into()
    };
    // What makes the object what it is to the table: a Service's type, ports and selector; the containers' images.
    let spec = match value["kind"].as_str() {
        Some("Service") => serde_json::json!({"type": value["spec"]["type"], "ports": value["spec"]["ports"],
            "selector": value["spec"]["selector"]}),
        Some("Pod") => serde_json::json!({"containers": images(value.pointer("/spec/containers"))}),
        _ => {
            serde_json::json!({"template": {"spec": {"containers": images(value.pointer("/spec/template/spec/containers"))}}})
        }
    };
    let mut stub = serde_json::json!({"apiVersion": value["apiVersion"], "kind": value["kind"], "metadata": {
        "name": metadata["name"], "namespace": metadata["namespace"], "uid": metadata["uid"],
        "ownerReferences": metadata["ownerReferences"], "labels": metadata["labels"],
        "annotations": {TRUNCATED_FROM_BYTES: bytes.to_string()}}, "spec": spec});
    if stub.to_string().len() > MAX_OBJECT_BYTES {
        stub["metadata"]["labels"] = Value::Null;
        stub["metadata"]["ownerReferences"] = Value::Null;
    }
    if stub.to_string().len() > MAX_OBJECT_BYTES {
        stub["spec"] = Value::Null;
    }
    stub
}

/// What a pod (or a workload's pod template) keeps: the containers' names, images and the configuration sources the
/// joins read (`POSTGRES_HOST_AUTH_METHOD`'s value, config map references), the volumes, and the containers'
/// IDs from the status. Other environment values, commands and arguments are not copied: they can hold secrets,
/// and they make the record large.
fn trim_pod(pod: &mut Value, template: bool) {
    let Some(fields) = pod.as_object_mut() else { return };
    // A workload's template: its labels only (its annotations are not read; a pod's metadata is trimmed already).
    if template && let Some(metadata) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.retain(|field, _| field == "labels");
    }
    if let Some(spec) = fields.get_mut("spec").and_then(Value::as_object_mut) {
        spec.retain(|field, _| {
            matches!(field.as_str(), "containers" | "initContainers" | "ephemeralContainers" | "volumes")
        });
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                trim_container(container);
            }
        }
        if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
            volumes.retain_mut(trim_volume);
        }
    }
    if let Some(status) = fields.get_mut("status").and_then(Value::as_object_mut) {
        status.retain(|field, _| field == "phase" || field.ends_with("ontainerStatuses"));
        for list in ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"] {
            for status in status.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(status) = status.as_object_mut() {
                    status.retain(|field, _| matches!(field.as_str(), "name" | "image" | "containerID"));
                }
            }
        }
    }
}

/// A volume the joins read: a config map, directly or projected (a pg_hba.conf may be in one), by name only; the
/// other volume types (some carry credentials: a gitRepo URL, CSI attributes) are dropped.
fn trim_volume(volume: &mut Value) -> bool {
    let Some(volume) = volume.as_object_mut() else { return false };
    let map_name = |source: &Value| source.pointer("/configMap/name").cloned();
    let direct = map_name(&Value::Object(volume.clone()));
    let projected: Vec<Value> = (volume.get("projected").and_then(|p| p.get("sources")).and_then(Value::as_array))
        .into_iter()
        .flatten()
        .filter_map(map_name)
        .map(|name| serde_json::json!({"configMap": {"name": name}}))
        .collect();
    let name = volume.get("name").cloned().unwrap_or_default();
    volume.clear();
    volume.insert("name".into(), name);
    if let Some(map) = direct {
        volume.insert("configMap".into(), serde_json::json!({"name": map}));
    } else if !projected.is_empty() {
        volume.insert("projected".into(), serde_json::json!({"sources": projected}));
    } else {
        return false;
    }
    true
}

fn trim_container(container: &mut Value) {
    let Some(container) = container.as_object_mut() else { return };
    container.retain(|field, _| matches!(field.as_str(), "name" | "image" | "env" | "envFrom"));
    if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
        // The trust variable, and the variables read from a config map; no other names or values.
        env.retain(|variable| {
            variable.get("name").and_then(Value::as_str) == Some(TRUST_VARIABLE)
                || variable.pointer("/valueFrom/configMapKeyRef").is_some()
        });
        for variable in env.iter_mut().filter_map(Value::as_object_mut) {
            let trust = variable.get("name").and_then(Value::as_str) == Some(TRUST_VARIABLE);
            variable.retain(|field, _| field == "name" || (trust && field == "value") || field == "valueFrom");
            if let Some(from) = variable.get_mut("valueFrom").and_then(Value::as_object_mut) {
                from.retain(|field, _| field == "configMapKeyRef");
            }
        }
    }
    if let Some(sources) = container.get_mut("envFrom").and_then(Value::as_array_mut) {
        sources.retain(|source| source.get("configMapRef").is_some());
    }
}

/// Keeps only a config map's entries that set trust authentication (`POSTGRES_HOST_AUTH_METHOD=trust`, a
/// pg_hba.conf `host … trust` line); false when there are none (and `binaryData` is dropped either way).
fn keep_trust_settings(map: &mut Value) -> bool {
    let Some(fields) = map.as_object_mut() else { return false };
    fields.remove("binaryData");
    let Some(data) = fields.get_mut("data").and_then(Value::as_object_mut) else { return false };
    data.retain(|key, value| {
        let text = value.as_str().unwrap_or_default();
        (key == TRUST_VARIABLE && text.trim().eq_ignore_ascii_case("trust"))
            || palisade_detect::detectors::exposed::hba_trusts_network(text)
    });
    !data.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, namespace: Option<&str>, name: &str, extra: Value) -> DynamicObject {
        let mut value = serde_json::json!({
            "apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "7",
                "managedFields": [{"manager": "kubectl"}],
                "labels": {"app": name},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "shop",
                    "service.beta.kubernetes.io/aws-load-balancer-internal": "true"}},
        });
        if let Some(namespace) = namespace {
            value["metadata"]["namespace"] = namespace.into();
        }
        if let (Some(fields), Some(more)) = (value.as_object_mut(), extra.as_object()) {
            fields.extend(more.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    fn watcher_for_tests() -> ClusterStateWatcher {
        ClusterStateWatcher::new(&watcher_for_tests_config(), "prod").unwrap()
    }

    fn watcher_for_tests_config() -> KubernetesConfig {
        KubernetesConfig {
            api_server: Some("https://127.0.0.1:1".into()),
            token_path: None,
            ca_path: None,
            client_cert_path: None,
            client_key_path: None,
            context_wait_ms: 0,
            max_waiting: 1,
            page_size: 10,
            watch_timeout_secs: 1,
        }
    }

    #[tokio::test]
    async fn mismatched_client_credentials_and_missing_files_are_refused_at_start() {
        let config =
            KubernetesConfig { client_cert_path: Some("/nonexistent.crt".into()), ..watcher_for_tests_config() };
        let refused =
            |config| ClusterStateWatcher::new(&config, "prod").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused(config.clone()).contains("go together"));
        let config = KubernetesConfig { client_cert_path: None, token_path: Some("/nonexistent".into()), ..config };
        assert!(refused(config.clone()).contains("token file /nonexistent"));
        let config = KubernetesConfig { token_path: None, ca_path: Some("/nonexistent-ca".into()), ..config };
        assert!(refused(config).contains("CA /nonexistent-ca"));
    }

    #[tokio::test]
    async fn objects_become_records_without_managed_fields_and_deletes_become_tombstones() {
        let mut watcher = watcher_for_tests();
        let pod = object("Pod", Some("shop"), "web", serde_json::json!({"spec": {"containers": []}}));
        let records = watcher.apply("Pod", watcher::Event::Apply(pod.clone()));
        let [StateRecord { key, object: Some(record) }] = records.as_slice() else { panic!("{records:?}") };
        assert_eq!(key, "prod/Pod/shop/web");
        assert_eq!(
            (record.resource.as_str(), record.uid.as_str(), record.namespace.as_deref()),
            ("pods", "uid-web", Some("shop"))
        );
        let json: Value = serde_json::from_str(&record.object).unwrap();
        let metadata = json["metadata"].as_object().unwrap();
        assert_eq!(metadata.keys().collect::<Vec<_>>(), ["labels", "name", "namespace", "uid"], "{metadata:?}");
        assert_eq!(json["kind"], "Pod");
        // The same object again (a new resource version, nothing the table reads changed) writes nothing.
        let mut again = pod.clone();
        again.metadata.resource_version = Some("8".into());
        assert!(watcher.apply("Pod", watcher::Event::Apply(again)).is_empty());
        // A Service keeps its load-balancer annotations, and only those.
        let service = object("Service", Some("shop"), "web", serde_json::json!({"spec": {"type": "LoadBalancer"}}));
        let records = watcher.apply("Service", watcher::Event::Apply(service));
        let json: Value = serde_json::from_str(&records[0].object.as_ref().unwrap().object).unwrap();
        assert_eq!(
            json["metadata"]["annotations"],
            serde_json::json!({"service.beta.kubernetes.io/aws-load-balancer-internal": "true"})
        );
        let records = watcher.apply("Pod", watcher::Event::Delete(pod.clone()));
        assert_eq!(records, vec![StateRecord { key: "prod/Pod/shop/web".into(), object: None }]);
        // A delete always writes its tombstone: another replica may have written the key.
        assert_eq!(watcher.apply("Pod", watcher::Event::Delete(pod)).len(), 1);
        let namespace = object("Namespace", None, "kubeflow", serde_json::json!({}));
        let records = watcher.apply("Namespace", watcher::Event::Apply(namespace));
        assert_eq!(records[0].key, "prod/Namespace//kubeflow");
    }

    #[tokio::test]
    async fn pods_and_workloads_keep_what_the_table_reads_and_not_their_secrets() {
        let mut watcher = watcher_for_tests();
        let spec = serde_json::json!({
            "containers": [{"name": "db", "image": "postgres:16", "command": ["sh", "-c", "PGPASSWORD=hunter2 run"],
                "env": [{"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"}, {"name": "API_KEY", "value": "s3cret"},
                    {"name": "FROM_MAP", "valueFrom": {"configMapKeyRef": {"name": "pg", "key": "m"}}},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "p"}}}],
                "envFrom": [{"configMapRef": {"name": "pg-env"}}, {"secretRef": {"name": "pg-secret"}}]}],
            "volumes": [{"name": "hba", "configMap": {"name": "pg-hba"}},
                {"name": "all", "projected": {"sources": [{"configMap": {"name": "pg-more"}}, {"secret": {"name": "pg-secret"}}]}},
                {"name": "repo", "gitRepo": {"repository": "https://user:token-abc@git.example/repo"}},
                {"name": "csi", "csi": {"driver": "x", "volumeAttributes": {"password": "token-def"}}}],
            "hostNetwork": true,
        });
        let pod = object(
            "Pod",
            Some("db"),
            "pg-0",
            serde_json::json!({"spec": spec,
            "status": {"phase": "Running", "podIP": "10.0.0.7",
                "containerStatuses": [{"name": "db", "containerID": "containerd://abc", "image": "postgres:16", "ready": true}]}}),
        );
        let records = watcher.apply("Pod", watcher::Event::Apply(pod));
        let text = &records[0].object.as_ref().unwrap().object;
        for secret in [
            "hunter2",
            "s3cret",
            "API_KEY",
            "FROM_SECRET",
            "secretKeyRef",
            "pg-secret",
            "token-abc",
            "token-def",
            "podIP",
            "hostNetwork",
        ] {
            assert!(!text.contains(secret), "{secret} copied: {text}");
        }
        let json: Value = serde_json::from_str(text).unwrap();
        let container = &json["spec"]["containers"][0];
        assert_eq!(container["env"][0]["value"], "trust");
        assert_eq!(container["env"][1]["valueFrom"]["configMapKeyRef"]["name"], "pg");
        assert_eq!(container["env"].as_array().map(Vec::len), Some(2), "the trust variable and the config map's");
        assert_eq!(container["envFrom"], serde_json::json!([{"configMapRef": {"name": "pg-env"}}]));
        assert_eq!(
            json["spec"]["volumes"],
            serde_json::json!([{"name": "hba", "configMap": {"name": "pg-hba"}},
                {"name": "all", "projected": {"sources": [{"configMap": {"name": "pg-more"}}]}}])
        );
        assert_eq!(
            json["status"]["containerStatuses"][0],
            serde_json::json!({"name": "db", "containerID": "containerd://abc", "image": "postgres:16"})
        );
        // The same for a workload's pod template.
        let deployment = object(
            "Deployment",
            Some("db"),
            "pg",
            serde_json::json!({"spec": {"replicas": 1, "paused": true,
            "selector": {"matchLabels": {"app": "pg"}}, "template": {"metadata": {"labels": {"app": "pg"},
            "annotations": {"vault.hashicorp.com/agent-inject-secret-db": "x"}}, "spec": spec}},
            "status": {"availableReplicas": 1}}),
        );
        let records = watcher.apply("Deployment", watcher::Event::Apply(deployment));
        let text = &records[0].object.as_ref().unwrap().object;
        assert!(!text.contains("s3cret") && !text.contains("paused") && !text.contains("vault"), "{text}");
        assert!(!text.contains("availableReplicas"), "a workload's status is not copied: {text}");
        let json: Value = serde_json::from_str(text).unwrap();
        assert_eq!(json["spec"]["template"]["metadata"]["labels"]["app"], "pg");
        assert_eq!(json["apiVersion"], "apps/v1");
    }

    #[tokio::test]
    async fn only_trust_settings_of_config_maps_are_kept() {
        let mut watcher = watcher_for_tests();
        let settings = |data: Value| object("ConfigMap", Some("db"), "pg", serde_json::json!({"data": data}));
        let plain = settings(serde_json::json!({"PASSWORD": "hunter2", "LOG_LEVEL": "debug"}));
        assert!(watcher.apply("ConfigMap", watcher::Event::Apply(plain.clone())).is_empty());
        let trusting = settings(serde_json::json!({
            "PASSWORD": "hunter2", TRUST_VARIABLE: " Trust ", "pg_hba.conf": "host all all 0.0.0.0/0 trust\n",
        }));
        let records = watcher.apply("ConfigMap", watcher::Event::Apply(trusting));
        let json: Value = serde_json::from_str(&records[0].object.as_ref().unwrap().object).unwrap();
        let data = json["data"].as_object().unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), [TRUST_VARIABLE, "pg_hba.conf"], "the password is not copied");
        // Trust taken out again: the record written before is deleted.
        let records = watcher.apply("ConfigMap", watcher::Event::Apply(plain));
        assert_eq!(records, vec![StateRecord { key: "prod/ConfigMap/db/pg".into(), object: None }]);
    }

    #[tokio::test]
    async fn a_relist_tombstones_what_it_no_longer_holds_and_keys_read_back_count() {
        let mut watcher = watcher_for_tests();
        watcher.already_written([
            "prod/Pod/shop/old".to_owned(),
            "other/Pod/shop/x".to_owned(),
            "prod/Bogus/a/b".to_owned(),
        ]);
        assert!(watcher.apply("Pod", watcher::Event::Init).is_empty());
        let kept = object("Pod", Some("shop"), "kept", serde_json::json!({}));
        assert_eq!(watcher.apply("Pod", watcher::Event::InitApply(kept)).len(), 1);
        // Another kind's relist does not touch the pods.
        watcher.apply("Service", watcher::Event::Init);
        assert!(watcher.apply("Service", watcher::Event::InitDone).is_empty());
        let gone = watcher.apply("Pod", watcher::Event::InitDone);
        assert_eq!(
            gone,
            vec![StateRecord { key: "prod/Pod/shop/old".into(), object: None }],
            "another cluster's key is not ours"
        );
        // A second relist without `kept` deletes it.
        watcher.apply("Pod", watcher::Event::Init);
        assert_eq!(watcher.apply("Pod", watcher::Event::InitDone)[0].key, "prod/Pod/shop/kept");
    }

    #[tokio::test]
    async fn the_pod_table_is_synced_after_the_list_and_again_after_a_failure_once_the_watch_speaks() {
        let view = Arc::new(ClusterView::new());
        let mut watcher = watcher_for_tests().with_view(Arc::clone(&view));
        let pod = |name: &str| object("Pod", Some("shop"), name, serde_json::json!({"spec": {"containers": []}}));
        watcher.apply("Pod", watcher::Event::Init);
        watcher.apply("Pod", watcher::Event::InitApply(pod("a")));
        assert!(!view.synced(), "not before the list is complete");
        watcher.apply("Pod", watcher::Event::InitDone);
        assert!(view.synced());
        assert_eq!(view.pods(), 1);
        watcher.failed("Service", "connection reset");
        assert!(view.synced(), "another kind's failure leaves the pod table alone");
        watcher.failed("Pod", "connection reset");
        assert!(!view.synced());
        // kube resumes the watch without a list: its next event says it follows again.
        watcher.apply("Pod", watcher::Event::Apply(pod("b")));
        assert!(view.synced());
        assert_eq!(view.pods(), 2);
    }

    #[tokio::test]
    async fn waiting_records_keep_the_newest_per_key_and_take_waits_for_one() {
        let pending = Arc::new(PendingRecords::default());
        let record = |key: &str, version: &str| StateRecord {
            key: key.into(),
            object: Some(ClusterObject { resource_version: version.into(), ..Default::default() }),
        };
        pending.push(record("c/Pod/a/x", "1"));
        pending.push(record("c/Pod/a/x", "2"));
        pending.push(StateRecord { key: "c/Pod/a/y".into(), object: None });
        let taken = pending.take().await;
        assert_eq!(taken.len(), 2, "one per key");
        assert_eq!(taken[0].object.as_ref().map(|o| o.resource_version.as_str()), Some("2"), "the newest");
        assert!(pending.is_empty());
        let waiting = tokio::spawn({
            let pending = Arc::clone(&pending);
            async move { pending.take().await }
        });
        tokio::task::yield_now().await;
        pending.push(record("c/Pod/a/z", "3"));
        assert_eq!(waiting.await.unwrap()[0].key, "c/Pod/a/z");
    }

    #[tokio::test]
    async fn an_object_padded_past_the_bound_is_cut_to_its_identity() {
        let mut watcher = watcher_for_tests();
        let labels: serde_json::Map<String, Value> =
            (0..6000).map(|i| (format!("pad-{i:05}.example.com/key"), Value::String("v".repeat(60)))).collect();
        let mut pod = object(
            "Pod",
            Some("shop"),
            "big",
            serde_json::json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}),
        );
        pod.metadata.labels = Some(labels.into_iter().map(|(k, v)| (k, v.as_str().unwrap().to_owned())).collect());
        let pod_uid = pod.metadata.uid.clone();
        let records = watcher.apply("Pod", watcher::Event::Apply(pod));
        let record = records[0].object.as_ref().unwrap();
        assert!(record.object.len() <= MAX_OBJECT_BYTES, "{} bytes", record.object.len());
        let json: Value = serde_json::from_str(&record.object).unwrap();
        assert_eq!(json["metadata"]["uid"].as_str(), pod_uid.as_deref());
        assert!(json["metadata"]["annotations"][TRUNCATED_FROM_BYTES].as_str().is_some());
        assert_eq!(json["spec"]["containers"][0]["image"], "x", "the stub keeps the containers' images");
        // A padded LoadBalancer keeps what makes it one.
        let mut service = object(
            "Service",
            Some("shop"),
            "lb",
            serde_json::json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 5432}], "selector": {"app": "pg"}}}),
        );
        service.metadata.labels = (0..6000)
            .map(|i| (format!("pad-{i:05}.example.com/key"), "v".repeat(60)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into();
        let records = watcher.apply("Service", watcher::Event::Apply(service));
        let json: Value = serde_json::from_str(&records[0].object.as_ref().unwrap().object).unwrap();
        assert_eq!(
            json["spec"],
            serde_json::json!({"type": "LoadBalancer", "ports": [{"port": 5432}], "selector": {"app": "pg"}})
        );
    }
}
