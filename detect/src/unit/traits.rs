//! The two detector traits. A stateless unit decides from one event; a windowed unit keeps keyed state over event
//! time (windows, learned baselines, the cluster-state joins) that the engine checkpoints and restores.

use serde_json::Value;

use super::event::{Event, Finding, PodContext};
use super::meta::AlertTypeMeta;

/// One event in, zero or more findings out. Pure.
pub trait StatelessDetector: Send + Sync {
    fn meta(&self) -> &'static AlertTypeMeta;
    fn detect(&self, event: &Event<'_>) -> Vec<Finding>;

    /// Every alert type this detector raises (a family may raise several from one look at the event).
    fn metas(&self) -> Vec<&'static AlertTypeMeta> {
        vec![self.meta()]
    }

    /// Findings with the alert type each is of.
    fn detect_all(&self, event: &Event<'_>) -> Vec<(&'static AlertTypeMeta, Finding)> {
        let meta = self.meta();
        self.detect(event).into_iter().map(|finding| (meta, finding)).collect()
    }
}

/// For a baseline: how many keys are learning and how many are past their learning period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearningState {
    pub learning: usize,
    pub active: usize,
}

/// What a windowed detector's state is keyed by, as far as where its events must meet: `Input` when the input
/// topic's own key keeps each of its keys on one partition (node windows by container, kube-system's baseline,
/// cloud identities), else the key its events are re-keyed by before it sees them (see `Engine::rekeys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    Input,
    /// Audit events by cluster and user (service-account baselines, kube-hunter's clients); the audit topic is
    /// keyed by namespace, and one user acts in many.
    AuditUser,
    /// Audit events by cluster (the cluster-state joins: a join may span namespaces, e.g. an Istio gateway in
    /// istio-system in front of Kubeflow's namespace; and the pods table node alerts take their context from).
    AuditCluster,
    /// Node events by the pod's namespace (workload baselines: a workload's pods run on many nodes).
    PodNamespace,
}

impl StateKey {
    /// Its name in the re-keyed record's header.
    pub const fn name(self) -> &'static str {
        match self {
            StateKey::Input => "input",
            StateKey::AuditUser => "audit-user",
            StateKey::AuditCluster => "audit-cluster",
            StateKey::PodNamespace => "pod-namespace",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [StateKey::Input, StateKey::AuditUser, StateKey::AuditCluster, StateKey::PodNamespace]
            .into_iter()
            .find(|key| key.name() == name)
    }
}

/// A windowed unit's changes for the changelog: its keyed entries that changed (each with its state now, `None`
/// when gone) and the rest of its state whole. Its `snapshot` is `rest` with `field` set to the map of every
/// entry, which is how the changelog puts it back together.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedChanges {
    pub field: &'static str,
    /// Every entry is here (the first changes asked for): what the changelog held before is replaced.
    pub all: bool,
    pub rest: Value,
    pub entries: Vec<(String, Option<Value>)>,
}

impl KeyedChanges {
    /// The state these changes give when they hold every entry (`all`): `rest` with `field` set to the entries.
    pub fn snapshot(&self) -> Value {
        let mut state = self.rest.clone();
        let entries = (self.entries.iter()).filter_map(|(key, value)| Some((key.clone(), value.clone()?))).collect();
        if let Value::Object(map) = &mut state {
            map.insert(self.field.to_owned(), Value::Object(entries));
        }
        state
    }
}

pub trait WindowedDetector: Send {
    fn meta(&self) -> &'static AlertTypeMeta;
    /// Findings this event completes.
    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding>;

    /// Every alert type this detector raises (a join over one table may raise several).
    fn metas(&self) -> Vec<&'static AlertTypeMeta> {
        vec![self.meta()]
    }

    /// Findings with the alert type each is of. The engine checks each type's rule (enabled, exceptions) after.
    fn observe_all(&mut self, event: &Event<'_>) -> Vec<(&'static AlertTypeMeta, Finding)> {
        let meta = self.meta();
        self.observe(event).into_iter().map(|finding| (meta, finding)).collect()
    }

    /// Findings, given the pod the event ran in when the engine knows it (node events of a pod the cluster-state
    /// table holds). Detectors keyed by workload use it; the others ignore it.
    fn observe_in(
        &mut self,
        event: &Event<'_>,
        _context: Option<&PodContext>,
    ) -> Vec<(&'static AlertTypeMeta, Finding)> {
        self.observe_all(event)
    }

    /// The pod a node event's pod UID names, when this detector keeps a table of pods (the cluster-state join).
    fn pod_context(&self, _pod_uid: &str) -> Option<PodContext> {
        None
    }

    /// What the engine shares with every shard's detectors: the cluster state the API server's list/watch showed
    /// (`detectors::exposed::ClusterSeed`, behind `Any` so this module stays a leaf). The joins keep it.
    fn attach_shared(&mut self, _shared: &std::sync::Arc<dyn std::any::Any + Send + Sync>) {}

    /// For a baseline: how many keys are learning and how many are past their learning period.
    fn learning(&self) -> Option<LearningState> {
        None
    }
    /// The key of its state in a checkpoint: its first alert type's ID unless it says otherwise. It must not change
    /// between releases, or a restart after an upgrade starts this detector empty (a test pins the keys).
    fn checkpoint_key(&self) -> &'static str {
        self.meta().id
    }

    /// For the changelog: its keyed entries changed since the last call and the rest of its state, so one record
    /// per changed key is written. `None` (unless it says otherwise): its whole state (`snapshot`) is written.
    fn take_keyed_changes(&mut self) -> Option<KeyedChanges> {
        None
    }

    /// Records its changes from now on, none pending: its state was just read back from its keyed records.
    fn record_changes_from_now(&mut self) {}

    /// What its state is keyed by; `StateKey::Input` unless it says otherwise.
    fn state_key(&self) -> StateKey {
        StateKey::Input
    }

    /// Whether an event of one of its inputs can change its state or raise a finding; an event no detector of a
    /// key wants is not re-keyed for them. Every event unless it says otherwise.
    fn wants(&self, _event: &Event<'_>) -> bool {
        true
    }

    /// Drops state that no event inside the lateness bound can extend any more.
    fn expire(&mut self, now_ms: i64);
    fn snapshot(&self) -> Value;
    fn restore(&mut self, state: &Value) -> Result<(), String>;
    /// Keys held, for the memory figures.
    fn keys(&self) -> usize;

    /// Events ignored so far for arriving later than the lateness bound allows.
    fn late_events(&self) -> u64 {
        0
    }
}
