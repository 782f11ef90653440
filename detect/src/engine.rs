//! The engine: runs every enabled detector over one event, turns findings into `Detection` records with
//! deterministic IDs and verbatim evidence, and applies the configured exceptions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use palisade_schemas::{ClusterObject, Detection, EvidenceSource, NodeEvent, ProcessInfo};
use sha2::{Digest, Sha256};

use crate::config::{CompiledException, CompiledRule, DetectConfig, DetectConfigError};
use crate::detectors::exposed::ClusterSeed;
use crate::keyed::KeyedChanges;
use crate::registry::{self, WindowedFactory};
use crate::unit::{
    AlertTypeMeta, Event, Finding, Input, LearningState, PodContext, StateKey, StatelessDetector, WindowedDetector,
};

/// Events between two expiries of the windows' state.
pub const EXPIRE_EVERY_EVENTS: u64 = 4096;

/// One shard's windowed detectors and their clock.
struct Windows {
    detectors: Vec<Box<dyn WindowedDetector>>,
    /// Newest event time seen: the clock the windows expire by.
    watermark_ms: i64,
    since_expiry: u64,
    /// By detector: whether its state may have changed since `take_changes` last read it.
    changed: Vec<bool>,
}

impl Windows {
    fn new(mut detectors: Vec<Box<dyn WindowedDetector>>, seed: &Arc<ClusterSeed>) -> Self {
        let shared: Arc<dyn std::any::Any + Send + Sync> = Arc::clone(seed) as _;
        for detector in &mut detectors {
            detector.attach_shared(&shared);
        }
        let changed = vec![false; detectors.len()];
        Self { detectors, watermark_ms: 0, since_expiry: 0, changed }
    }
}

/// The shard of events that come from no partition (replay, scan, the in-process bus's file checkpoint).
pub const DEFAULT_SHARD: &str = "";

/// What one shard's windows changed since they were last read: its clock and the state of each detector that
/// saw an event or expired keys, by checkpoint key.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardChanges {
    pub shard: String,
    pub watermark_ms: i64,
    pub states: Vec<(&'static str, StateChange)>,
}

/// One detector's change, for the changelog.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    /// Its whole state (`snapshot`).
    Whole(serde_json::Value),
    /// The entries of its keyed state that changed, and the rest of it.
    Keyed(KeyedChanges),
}

/// Windows by shard. A shard is what one input partition feeds: its state moves with the partition when another
/// detect instance takes it over, so no key's state may span two shards (the topics' keys see to that).
struct Shards {
    by_name: BTreeMap<String, Windows>,
    /// Fresh windows for a new shard; without it every shard is the default one.
    fresh: Option<WindowedFactory>,
    /// The cluster state from the API server's list/watch, shared by every shard's joins.
    seed: Arc<ClusterSeed>,
}

impl Shards {
    fn get(&mut self, shard: &str) -> &mut Windows {
        let shard = if self.fresh.is_some() { shard } else { DEFAULT_SHARD };
        if !self.by_name.contains_key(shard) {
            let detectors = self.fresh.as_ref().map(|fresh| fresh()).unwrap_or_default();
            self.by_name.insert(shard.to_owned(), Windows::new(detectors, &self.seed));
        }
        self.by_name.get_mut(shard).expect("inserted above")
    }
}

/// Which detectors one event is for, where the input is split by key (see `StateKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass<'a> {
    /// Every detector: one process holds every key (replay, scan, the in-process bus).
    All,
    /// An event from its input topic: the stateless detectors and the windowed ones keyed as the topic is.
    Input,
    /// An event re-keyed by `key`: the windowed detectors keyed so, with the pod context it was sent with.
    Rekeyed { key: StateKey, context: Option<&'a PodContext> },
}

/// An event to send again under another key, for the detectors whose state is keyed so.
#[derive(Debug, Clone, PartialEq)]
pub struct Rekey {
    pub key: StateKey,
    /// The record key: every event of one state key gets the same, so they meet on one partition.
    pub record_key: String,
    /// The pod context the event was seen with (the detectors keyed by workload need it).
    pub context: Option<PodContext>,
}

pub struct Engine {
    detectors: Vec<Box<dyn StatelessDetector>>,
    /// By windowed detector (the same order in every shard): what its state is keyed by.
    state_keys: Vec<StateKey>,
    /// By `Input::index`: the keys other than the input's that its windowed detectors need.
    rekeyed: Vec<Vec<StateKey>>,
    shards: Mutex<Shards>,
    /// The same as the shards' (`Shards::seed`), written without their lock.
    seed: Arc<ClusterSeed>,
    rules: BTreeMap<String, CompiledRule>,
    /// By `Input::index`: the stateless and the windowed detectors that declare that input, in registry order.
    routes: Vec<Routes>,
}

#[derive(Debug, Clone, Default)]
struct Routes {
    stateless: Vec<usize>,
    windowed: Vec<usize>,
}

const NO_ROUTES: &Routes = &Routes { stateless: Vec::new(), windowed: Vec::new() };

/// By `Input::index`: the detectors (indexes into `metas`) whose alert types declare that input.
fn route(metas: impl Iterator<Item = Vec<&'static AlertTypeMeta>>) -> Vec<Vec<usize>> {
    let mut routes = vec![Vec::new(); Input::COUNT];
    for (detector, metas) in metas.enumerate() {
        let mut inputs: Vec<usize> = metas.iter().flat_map(|meta| meta.inputs).map(|input| input.index()).collect();
        inputs.sort_unstable();
        inputs.dedup();
        inputs.into_iter().for_each(|input| routes[input].push(detector));
    }
    routes
}

impl Engine {
    /// Every registered detector, configured by `config`.
    pub fn new(config: &DetectConfig) -> Result<Self, DetectConfigError> {
        Self::with_units(config, registry::detectors(config)?)
    }

    /// These units, with the rules (enabled, exceptions) of `config`.
    pub fn with_units(config: &DetectConfig, registered: registry::Registered) -> Result<Self, DetectConfigError> {
        let rules = config.validate()?;
        let stateless = route(registered.stateless.iter().map(|detector| detector.metas()));
        let windowed = route(registered.windowed.iter().map(|detector| detector.metas()));
        let state_keys: Vec<StateKey> = registered.windowed.iter().map(|detector| detector.state_key()).collect();
        let rekeyed = (windowed.iter())
            .map(|detectors| {
                let mut keys: Vec<StateKey> = detectors.iter().map(|&index| state_keys[index]).collect();
                keys.retain(|key| *key != StateKey::Input);
                keys.sort_unstable();
                keys.dedup();
                keys
            })
            .collect();
        let routes = stateless.into_iter().zip(windowed).map(|(stateless, windowed)| Routes { stateless, windowed });
        let routes = routes.collect();
        let seed = Arc::new(ClusterSeed::new());
        let default = Windows::new(registered.windowed, &seed);
        let by_name = BTreeMap::from([(DEFAULT_SHARD.to_owned(), default)]);
        let shards = Shards { by_name, fresh: registered.fresh_windowed, seed: Arc::clone(&seed) };
        let shards = Mutex::new(shards);
        Ok(Self { detectors: registered.stateless, state_keys, rekeyed, shards, seed, rules, routes })
    }

    /// The configured rule of an alert type, or `None` when it is disabled.
    fn rule(&self, meta: &AlertTypeMeta) -> Option<Option<&CompiledRule>> {
        let rule = self.rules.get(meta.id);
        if rule.is_some_and(|rule| !rule.enabled) { None } else { Some(rule) }
    }

    fn keep(
        out: &mut Vec<Detection>,
        rule: Option<&CompiledRule>,
        meta: &AlertTypeMeta,
        (event, context): (&Event<'_>, Option<&PodContext>),
        finding: Finding,
        detected_at_ms: i64,
    ) {
        let mut detection = build_detection(meta, event, finding, detected_at_ms);
        // A node alert gets the pod its event ran in, before exceptions (by namespace, workload, image) apply.
        if let Some(context) = context {
            detection.namespace = detection.namespace.or_else(|| Some(context.namespace.clone()));
            detection.pod = detection.pod.or_else(|| Some(context.pod.clone()));
            detection.workload = detection.workload.or_else(|| Some(context.workload.clone()));
            detection.image = detection.image.or_else(|| context.image.clone());
            if detection.pod_labels.is_empty() {
                detection.pod_labels.clone_from(&context.labels);
            }
        }
        let excepted = rule.is_some_and(|rule| rule.exceptions.iter().any(|e| exception_matches(e, &detection)));
        if !excepted {
            out.push(detection);
        }
    }

    fn shards(&self) -> std::sync::MutexGuard<'_, Shards> {
        self.shards.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Detections of one event of the default shard, by every detector.
    pub fn process(&self, event: &Event<'_>, detected_at_ms: i64) -> Vec<Detection> {
        self.process_in(DEFAULT_SHARD, Pass::All, event, detected_at_ms)
    }

    /// The pod a node event ran in, from the pods table of any shard (the table is cluster state), else from what
    /// the API server's list/watch showed.
    fn context_of(shards: &Shards, event: &Event<'_>) -> Option<PodContext> {
        let Event::Node(NodeEvent { pod_uid: Some(uid), .. }) = event else { return None };
        (shards.by_name.values().flat_map(|windows| &windows.detectors))
            .find_map(|detector| detector.pod_context(uid))
            .or_else(|| shards.seed.pod_context(uid))
    }

    /// An object as the API server's list/watch showed it (`palisade.cluster.state`): the joins and node alerts'
    /// pod context know it from now on, in every shard.
    pub fn apply_cluster_object(&self, object: &ClusterObject) {
        self.seed.apply(object);
    }

    /// The object a cluster-state tombstone's key names is gone.
    pub fn forget_cluster_object(&self, key: &str) {
        self.seed.forget(key);
    }

    /// Pods the list/watch showed, over every cluster.
    pub fn cluster_state_pods(&self) -> usize {
        self.seed.pods()
    }

    /// The pod a UID names, as the list/watch showed it.
    pub fn cluster_state_pod(&self, pod_uid: &str) -> Option<PodContext> {
        self.seed.pod_context(pod_uid)
    }

    /// The keys this event must be sent again under (read from its input topic, with `Pass::Input`), for the
    /// windowed detectors whose state is keyed otherwise than the topic. None for most events.
    pub fn rekeys(&self, event: &Event<'_>) -> Vec<Rekey> {
        let Some(keys) = self.rekeyed.get(event.input().index()).filter(|keys| !keys.is_empty()) else {
            return Vec::new();
        };
        let mut shards = self.shards();
        let context = Self::context_of(&shards, event);
        // Which keys some detector wants this event for (the default shard holds one of each detector).
        let routed =
            self.routes.get(event.input().index()).map(|routes| routes.windowed.as_slice()).unwrap_or_default();
        let detectors = &shards.get(DEFAULT_SHARD).detectors;
        let wanted: Vec<StateKey> = (routed.iter())
            .filter(|&&index| detectors.get(index).is_some_and(|detector| detector.wants(event)))
            .filter_map(|&index| self.state_keys.get(index).copied())
            .collect();
        let mut out = Vec::new();
        for &key in keys.iter().filter(|key| wanted.contains(key)) {
            let record_key = match (key, event) {
                (StateKey::AuditUser, Event::Audit(audit)) => format!("user/{}/{}", audit.cluster, audit.username),
                (StateKey::AuditCluster, Event::Audit(audit)) => format!("cluster/{}", audit.cluster),
                (StateKey::PodNamespace, Event::Node(node)) if !node.in_container => format!("node/{}", node.node),
                // A container whose pod is not known is not profiled by workload.
                (StateKey::PodNamespace, Event::Node(_)) => match &context {
                    Some(context) => format!("namespace/{}", context.namespace),
                    None => continue,
                },
                _ => continue,
            };
            out.push(Rekey { key, record_key, context: context.clone() });
        }
        out
    }

    /// Detections of one event, its windows being those of `shard` (the partition it was read from), by the
    /// detectors `pass` names.
    pub fn process_in(&self, shard: &str, pass: Pass<'_>, event: &Event<'_>, detected_at_ms: i64) -> Vec<Detection> {
        let mut out = Vec::new();
        let mut shards = self.shards();
        let context = match pass {
            Pass::Rekeyed { context, .. } => context.cloned(),
            Pass::All | Pass::Input => Self::context_of(&shards, event),
        };
        let with = (event, context.as_ref());
        // A kind this build does not route (none, while `NodeEventKind::ALL` is complete) reaches no unit.
        let routes = self.routes.get(event.input().index()).unwrap_or(NO_ROUTES);
        if !matches!(pass, Pass::Rekeyed { .. }) {
            for detector in routes.stateless.iter().map(|&index| &self.detectors[index]) {
                for (meta, finding) in detector.detect_all(event) {
                    let Some(rule) = self.rule(meta) else { continue };
                    Self::keep(&mut out, rule, meta, with, finding, detected_at_ms);
                }
            }
        }
        let wanted = |index: usize| match pass {
            Pass::All => true,
            Pass::Input => self.state_keys.get(index) == Some(&StateKey::Input),
            Pass::Rekeyed { key, .. } => self.state_keys.get(index) == Some(&key),
        };
        let windows = shards.get(shard);
        windows.watermark_ms = windows.watermark_ms.max(event.time_ms());
        for &index in routes.windowed.iter().filter(|&&index| wanted(index)) {
            let Some(detector) = windows.detectors.get_mut(index) else { continue };
            windows.changed[index] = true;
            for (meta, finding) in detector.observe_in(event, context.as_ref()) {
                let Some(rule) = self.rule(meta) else { continue };
                Self::keep(&mut out, rule, meta, with, finding, detected_at_ms);
            }
        }
        windows.since_expiry += 1;
        if windows.since_expiry >= EXPIRE_EVERY_EVENTS {
            windows.since_expiry = 0;
            let now = windows.watermark_ms;
            windows.detectors.iter_mut().for_each(|detector| detector.expire(now));
            windows.changed.iter_mut().for_each(|changed| *changed = true);
        }
        out
    }

    /// The default shard's windowed state, by checkpoint key, for a checkpoint file.
    pub fn window_state(&self) -> serde_json::Value {
        let mut shards = self.shards();
        let windows = shards.get(DEFAULT_SHARD);
        let mut state = serde_json::Map::new();
        state.insert("watermark_ms".into(), windows.watermark_ms.into());
        for detector in &windows.detectors {
            state.insert(detector.checkpoint_key().into(), detector.snapshot());
        }
        serde_json::Value::Object(state)
    }

    /// Restores what `window_state` returned; detectors absent from it start empty.
    pub fn restore_window_state(&self, state: &serde_json::Value) -> Result<(), String> {
        let watermark_ms = state.get("watermark_ms").and_then(serde_json::Value::as_i64).unwrap_or_default();
        let states = state.as_object().map(|map| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let refused = self.restore_shard(DEFAULT_SHARD, watermark_ms, &states.unwrap_or_default());
        match refused.into_iter().next() {
            None => Ok(()),
            Some((key, error)) => Err(format!("{key}: {error}")),
        }
    }

    /// Replaces a shard's windows with the saved states given by checkpoint key (the others start empty).
    /// Returns the detectors that refused their state, with why: with a factory of fresh windows each of them
    /// starts empty and the others keep theirs; without one the shard is restored in place and a refusing
    /// detector may hold part of its state.
    pub fn restore_shard(
        &self,
        shard: &str,
        watermark_ms: i64,
        states: &BTreeMap<String, serde_json::Value>,
    ) -> Vec<(String, String)> {
        let mut shards = self.shards();
        let fresh = shards.fresh.clone();
        let mut refused = Vec::new();
        let mut restored = fresh.as_ref().map(|fresh| Windows::new(fresh(), &self.seed));
        let windows = match restored.as_mut() {
            Some(windows) => windows,
            None => shards.get(shard),
        };
        for index in 0..windows.detectors.len() {
            let key = windows.detectors[index].checkpoint_key();
            let Some(saved) = states.get(key) else { continue };
            if let Err(error) = windows.detectors[index].restore(saved) {
                refused.push((key.to_owned(), error));
                if let Some(mut empty) = fresh.as_ref().map(|fresh| fresh()).filter(|set| set.len() > index) {
                    windows.detectors[index] = empty.swap_remove(index);
                    windows.detectors[index].attach_shared(&(Arc::clone(&self.seed) as _));
                }
            }
        }
        windows.watermark_ms = watermark_ms;
        windows.changed.iter_mut().for_each(|changed| *changed = false);
        if let Some(windows) = restored {
            shards.by_name.insert(shard.to_owned(), windows);
        }
        refused
    }

    /// After `restore_shard`: the detectors (by checkpoint key) whose state was read back from their keyed
    /// records record their changes from now on, so the next changes are only what changes after.
    pub fn record_changes_from_now(&self, shard: &str, checkpoint_keys: &BTreeSet<String>) {
        let mut shards = self.shards();
        let Some(windows) = shards.by_name.get_mut(shard) else { return };
        for detector in windows.detectors.iter_mut().filter(|d| checkpoint_keys.contains(d.checkpoint_key())) {
            detector.record_changes_from_now();
        }
    }

    /// Forgets a shard (its partition went to another instance, or its state is to be read again).
    pub fn drop_shard(&self, shard: &str) {
        self.shards().by_name.remove(shard);
    }

    /// Whether a shard has windows here.
    pub fn holds_shard(&self, shard: &str) -> bool {
        self.shards().by_name.contains_key(shard)
    }

    /// Each shard's changes since the last call (shards without any are left out), and marks them read.
    pub fn take_changes(&self) -> Vec<ShardChanges> {
        let mut shards = self.shards();
        let mut out = Vec::new();
        for (shard, windows) in &mut shards.by_name {
            let states: Vec<_> = (windows.detectors.iter_mut().zip(&mut windows.changed))
                .filter(|(_, changed)| **changed)
                .map(|(detector, changed)| {
                    *changed = false;
                    let change = match detector.take_keyed_changes() {
                        Some(keyed) => StateChange::Keyed(keyed),
                        None => StateChange::Whole(detector.snapshot()),
                    };
                    (detector.checkpoint_key(), change)
                })
                .collect();
            if !states.is_empty() {
                out.push(ShardChanges { shard: shard.clone(), watermark_ms: windows.watermark_ms, states });
            }
        }
        out
    }

    /// Each baseline's learning state, by alert type, summed over the shards.
    pub fn learning_states(&self) -> Vec<(&'static str, LearningState)> {
        let shards = self.shards();
        let mut out: Vec<(&'static str, LearningState)> = Vec::new();
        for detector in shards.by_name.values().flat_map(|windows| &windows.detectors) {
            let Some(state) = detector.learning() else { continue };
            let id = detector.meta().id;
            match out.iter_mut().find(|(known, _)| *known == id) {
                Some((_, sum)) => {
                    sum.learning += state.learning;
                    sum.active += state.active;
                }
                None => out.push((id, state)),
            }
        }
        out
    }

    /// Events each windowed detector ignored as late, since it started (or was restored), over the shards.
    pub fn late_events(&self) -> Vec<(&'static str, u64)> {
        self.summed(|detector| detector.late_events() as usize)
            .into_iter()
            .map(|(id, n)| (id, n as u64))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Keys held by each windowed detector, over the shards.
    pub fn window_keys(&self) -> Vec<(&'static str, usize)> {
        self.summed(|detector| detector.keys())
    }

    fn summed(&self, count: impl Fn(&dyn WindowedDetector) -> usize) -> Vec<(&'static str, usize)> {
        let shards = self.shards();
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        for detector in shards.by_name.values().flat_map(|windows| &windows.detectors) {
            let id = detector.meta().id;
            match out.iter_mut().find(|(known, _)| *known == id) {
                Some((_, sum)) => *sum += count(detector.as_ref()),
                None => out.push((id, count(detector.as_ref()))),
            }
        }
        out
    }
}

/// Whether a rule's exception covers the detection (every field it names matches).
pub fn exception_matches(compiled: &CompiledException, detection: &Detection) -> bool {
    let exception = &compiled.exception;
    let exact = |wanted: &Option<String>, actual: &Option<String>| match wanted {
        None => true,
        Some(wanted) => actual.as_deref() == Some(wanted.as_str()),
    };
    let image_ok = match &exception.image {
        None => true,
        Some(pattern) => detection.image.as_deref().is_some_and(|image| match pattern.strip_suffix('*') {
            Some(prefix) => image.starts_with(prefix),
            None => image == pattern,
        }),
    };
    let process_ok = match &exception.process_path {
        None => true,
        Some(path) => detection.process.as_ref().is_some_and(|p| &p.executable == path),
    };
    let command_ok = match &compiled.command_line {
        None => true,
        Some(pattern) => detection.process.as_ref().is_some_and(|p| pattern.is_match(&p.args.join(" "))),
    };
    exact(&exception.namespace, &detection.namespace)
        && exact(&exception.workload, &detection.workload)
        && exact(&exception.user, &detection.user)
        && image_ok
        && process_ok
        && command_ok
}

/// A stable ID: the same alert type, evidence event and subject always give the same ID, so a replay or a
/// redelivery overwrites instead of duplicating.
pub fn detection_id(alert_type: &str, event_id: &str, subject: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [alert_type, event_id, subject] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hex::encode(&hasher.finalize()[..16])
}

fn build_detection(meta: &AlertTypeMeta, event: &Event<'_>, finding: Finding, detected_at_ms: i64) -> Detection {
    let mut detection = Detection {
        id: String::new(),
        alert_type: meta.id.to_owned(),
        source: EvidenceSource::Audit,
        timestamp_ms: 0,
        detected_at_ms,
        cluster: None,
        node: None,
        namespace: finding.namespace,
        pod: finding.pod,
        workload: finding.workload,
        container_id: None,
        image: finding.image,
        in_container: None,
        process: None,
        user: None,
        source_ip: None,
        evidence: Vec::new(),
        details: finding.details,
        pod_uid: None,
        pod_labels: BTreeMap::new(),
    };
    let event_id = match event {
        Event::Audit(audit) => {
            detection.source = EvidenceSource::Audit;
            detection.timestamp_ms = audit.stage_ms;
            detection.cluster = Some(audit.cluster.clone());
            detection.namespace = detection.namespace.or_else(|| audit.namespace.clone());
            detection.user = Some(audit.username.clone());
            detection.source_ip = audit.source_ips.first().cloned();
            detection.evidence.push(audit.raw.clone());
            audit.audit_id.as_str()
        }
        Event::Node(node) => {
            detection.source = EvidenceSource::Node;
            detection.timestamp_ms = node.timestamp_ms;
            detection.node = Some(node.node.clone());
            detection.container_id = node.container_id.clone();
            detection.pod_uid = node.pod_uid.clone();
            // What the node's CRI runtime said of the container; the exact container's image, so it goes before
            // the cluster-state table's (which knows the image of one-container pods only).
            detection.namespace = detection.namespace.or_else(|| node.pod_namespace.clone());
            detection.pod = detection.pod.or_else(|| node.pod_name.clone());
            detection.image = detection.image.or_else(|| node.image.clone());
            detection.in_container = Some(node.in_container);
            detection.process = Some(ProcessInfo {
                pid: node.tgid,
                ppid: node.ppid,
                executable: node.executable.clone().unwrap_or_else(|| node.comm.clone()),
                args: node.argv.clone(),
                user: Some(node.uid.to_string()),
                parent_chain: node.ancestry.iter().map(|p| p.executable.clone()).collect(),
            });
            detection.evidence.push(serde_json::to_string(node).unwrap_or_default());
            node.event_id.as_str()
        }
        Event::Cloud(cloud) => {
            detection.source = EvidenceSource::Cloud;
            detection.timestamp_ms = cloud.timestamp_ms;
            detection.user = Some(cloud.identity.clone());
            detection.source_ip = cloud.caller_ip.clone();
            detection.evidence.push(cloud.raw.clone());
            cloud.id.as_str()
        }
    };
    detection.id = detection_id(meta.id, event_id, &finding.subject);
    detection
}

#[cfg(test)]
mod tests;
