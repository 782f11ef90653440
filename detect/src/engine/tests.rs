//! The engine on its own, with test units: routing by declared input, rules (disabled types, exceptions), the
//! pod context of node alerts, window expiry by event time, and a checkpoint restored into a new engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use palisade_schemas::{AuditEvent, NodeEvent, NodeEventKind};
use serde_json::{Value, json};

use super::*;
use crate::config::{Exception, RuleConfig};
use crate::registry::{Registered, WindowedFactory};
use crate::unit::{DetectionKind, Maturity, Severity, Source, StateKey};
use crate::windowed::{restore_from, snapshot_of};

const fn meta(id: &'static str, source: Source, inputs: &'static [Input]) -> AlertTypeMeta {
    AlertTypeMeta {
        id,
        title: "test",
        severity: Severity::Low,
        tactics: &["Execution"],
        techniques: &["T1059"],
        source,
        kind: DetectionKind::Match,
        inputs,
        maturity: Maturity::Experimental,
        description: "test",
        false_positives: "test",
        audit_level: None,
        learned: None,
        windowed: None,
        unit: file!(),
    }
}

// Real IDs, so the configuration's rules validate; the metadata is the test's.
const ON_EXEC: &AlertTypeMeta = &meta("K8S.NODE_ReverseShell", Source::Node, &[Input::Node(NodeEventKind::Exec)]);
const ON_AUDIT: &AlertTypeMeta = &meta("K8S_DeleteEvents", Source::Audit, &[Input::Audit]);
const WINDOW: &AlertTypeMeta =
    &meta("K8S.NODE_ReconnaissanceArtifactsBurst", Source::Node, &[Input::Node(NodeEventKind::Exec)]);

/// Fires once on every event it is given, and counts them.
struct Counting {
    meta: &'static AlertTypeMeta,
    seen: Arc<AtomicUsize>,
}

impl StatelessDetector for Counting {
    fn meta(&self) -> &'static AlertTypeMeta {
        self.meta
    }

    fn detect(&self, _event: &Event<'_>) -> Vec<Finding> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        vec![Finding { subject: "s".into(), ..Finding::default() }]
    }
}

/// Counts the events of each key; a key's count reaching 3 fires. Records when it was expired.
struct Window {
    counts: std::collections::BTreeMap<String, u32>,
    expired_at: Arc<Mutex<Vec<i64>>>,
}

impl WindowedDetector for Window {
    fn meta(&self) -> &'static AlertTypeMeta {
        WINDOW
    }

    fn observe(&mut self, event: &Event<'_>) -> Vec<Finding> {
        let Event::Node(node) = event else { return Vec::new() };
        let count = self.counts.entry(node.node.clone()).or_default();
        *count += 1;
        if *count == 3 { vec![Finding::default()] } else { Vec::new() }
    }

    fn pod_context(&self, pod_uid: &str) -> Option<PodContext> {
        let context = PodContext {
            namespace: "shop".into(),
            pod: "web-1".into(),
            workload: "Deployment/web".into(),
            ..PodContext::default()
        };
        (pod_uid == "uid-1").then_some(context)
    }

    fn expire(&mut self, now_ms: i64) {
        self.expired_at.lock().unwrap().push(now_ms);
    }

    fn snapshot(&self) -> Value {
        snapshot_of(&self.counts)
    }

    fn restore(&mut self, state: &Value) -> Result<(), String> {
        restore_from(&mut self.counts, state)
    }

    fn keys(&self) -> usize {
        self.counts.len()
    }
}

struct Probe {
    exec_seen: Arc<AtomicUsize>,
    audit_seen: Arc<AtomicUsize>,
    expired_at: Arc<Mutex<Vec<i64>>>,
}

fn engine(config: &DetectConfig) -> (Engine, Probe) {
    let probe = Probe { exec_seen: Arc::default(), audit_seen: Arc::default(), expired_at: Arc::default() };
    let units = Registered {
        stateless: vec![
            Box::new(Counting { meta: ON_EXEC, seen: probe.exec_seen.clone() }),
            Box::new(Counting { meta: ON_AUDIT, seen: probe.audit_seen.clone() }),
        ],
        windowed: vec![Box::new(Window { counts: Default::default(), expired_at: probe.expired_at.clone() })],
        fresh_windowed: None,
    };
    (Engine::with_units(config, units).unwrap(), probe)
}

fn node(kind: NodeEventKind, at_ms: i64) -> NodeEvent {
    serde_json::from_value(json!({
        "event_id": format!("n/{at_ms}"), "kind": kind, "node": "node-a", "kernel_time_ns": at_ms * 1_000_000,
        "timestamp_ms": at_ms, "pid": 7, "tgid": 7, "ppid": 1, "uid": 0, "euid": 0, "gid": 0, "comm": "sh",
        "executable": "/bin/sh", "argv": ["sh"], "argv_truncated": false, "stdio": [], "cgroup_id": 1,
        "in_container": true, "ancestry": [], "pod_uid": "uid-1"
    }))
    .unwrap()
}

fn audit(user: &str) -> AuditEvent {
    let event = json!({"kind": "Event", "auditID": "a-1", "stage": "ResponseComplete", "verb": "get",
        "requestURI": "/api/v1/pods", "user": {"username": user}, "objectRef": {"resource": "pods"},
        "responseStatus": {"code": 200}, "stageTimestamp": "2026-12-06T10:00:00Z"});
    AuditEvent::from_k8s_json(&event, "c").unwrap()
}

#[test]
fn an_event_reaches_only_the_units_that_declare_its_input() {
    let (engine, probe) = engine(&DetectConfig::default());
    let alerts = engine.process(&Event::Node(&node(NodeEventKind::FileOpen, 1_000)), 0);
    assert!(alerts.is_empty(), "no unit declares file opens: {alerts:?}");
    assert_eq!(probe.exec_seen.load(Ordering::SeqCst), 0);
    let alerts = engine.process(&Event::Node(&node(NodeEventKind::Exec, 1_001)), 0);
    assert_eq!(alerts.iter().map(|a| a.alert_type.as_str()).collect::<Vec<_>>(), ["K8S.NODE_ReverseShell"]);
    assert_eq!((probe.exec_seen.load(Ordering::SeqCst), probe.audit_seen.load(Ordering::SeqCst)), (1, 0));
    let alerts = engine.process(&Event::Audit(&audit("mallory")), 0);
    assert_eq!(alerts.iter().map(|a| a.alert_type.as_str()).collect::<Vec<_>>(), ["K8S_DeleteEvents"]);
    assert_eq!((probe.exec_seen.load(Ordering::SeqCst), probe.audit_seen.load(Ordering::SeqCst)), (1, 1));
}

#[test]
fn a_disabled_type_and_an_excepted_case_raise_nothing() {
    let mut config = DetectConfig::default();
    config.rules.insert("K8S.NODE_ReverseShell".into(), RuleConfig { enabled: false, ..RuleConfig::default() });
    let except_alice = Exception { user: Some("alice".into()), reason: "test".into(), ..Exception::default() };
    let rule = RuleConfig { exceptions: vec![except_alice], ..RuleConfig::default() };
    config.rules.insert("K8S_DeleteEvents".into(), rule);
    let (engine, probe) = engine(&config);
    assert!(engine.process(&Event::Node(&node(NodeEventKind::Exec, 1_000)), 0).is_empty());
    assert_eq!(probe.exec_seen.load(Ordering::SeqCst), 1, "a disabled type's unit still runs; its findings go");
    assert!(engine.process(&Event::Audit(&audit("alice")), 0).is_empty());
    assert_eq!(engine.process(&Event::Audit(&audit("mallory")), 0).len(), 1, "the exception names alice only");
}

#[test]
fn alerts_get_the_event_and_ids_are_deterministic() {
    let (engine, _) = engine(&DetectConfig::default());
    let event = node(NodeEventKind::Exec, 1_000);
    let first = engine.process(&Event::Node(&event), 5);
    let again = engine.process(&Event::Node(&event), 6);
    assert_eq!(first[0].id, again[0].id);
    assert_eq!(first[0].id, detection_id("K8S.NODE_ReverseShell", "n/1000", "s"));
    assert_eq!((first[0].timestamp_ms, first[0].detected_at_ms), (1_000, 5));
    assert_eq!(first[0].node.as_deref(), Some("node-a"));
    assert_eq!(first[0].process.as_ref().map(|p| p.executable.as_str()), Some("/bin/sh"));
}

#[test]
fn windows_expire_by_event_time_every_so_many_events() {
    let (engine, probe) = engine(&DetectConfig::default());
    for n in 0..EXPIRE_EVERY_EVENTS as i64 {
        // Out of order: the clock is the newest event time seen, not the last one.
        let at = if n % 2 == 0 { 10_000 + n } else { 5_000 };
        engine.process(&Event::Node(&node(NodeEventKind::FileOpen, at)), 0);
    }
    let newest = 10_000 + EXPIRE_EVERY_EVENTS as i64 - 2;
    assert_eq!(*probe.expired_at.lock().unwrap(), [newest], "once, after the batch, at the watermark");
}

#[test]
fn a_checkpoint_restores_open_windows_into_a_new_engine() {
    let (engine, _) = engine(&DetectConfig::default());
    for at in [1_000, 2_000] {
        assert!(
            engine.process(&Event::Node(&node(NodeEventKind::Exec, at)), 0).iter().all(|a| a.alert_type != WINDOW.id)
        );
    }
    let state = engine.window_state();
    assert_eq!(state["watermark_ms"], 2_000);
    assert_eq!(state[WINDOW.id], json!({"node-a": 2}));

    let (restored, _) = self::engine(&DetectConfig::default());
    restored.restore_window_state(&state).unwrap();
    let third = restored.process(&Event::Node(&node(NodeEventKind::Exec, 3_000)), 0);
    assert!(third.iter().any(|a| a.alert_type == WINDOW.id), "the third event completes the restored window");
    assert_eq!(restored.window_keys(), [(WINDOW.id, 1)]);

    let broken = json!({"watermark_ms": 1, WINDOW.id: "not a map"});
    let error = self::engine(&DetectConfig::default()).0.restore_window_state(&broken).unwrap_err();
    assert!(error.starts_with(WINDOW.id), "{error}");
}

#[test]
fn node_alerts_get_their_pod_before_exceptions_apply() {
    let (engine, _) = engine(&DetectConfig::default());
    let alerts = engine.process(&Event::Node(&node(NodeEventKind::Exec, 1_000)), 0);
    assert_eq!(alerts[0].namespace.as_deref(), Some("shop"));
    assert_eq!(alerts[0].workload.as_deref(), Some("Deployment/web"));

    let mut config = DetectConfig::default();
    let except_shop = Exception { namespace: Some("shop".into()), reason: "test".into(), ..Exception::default() };
    config
        .rules
        .insert("K8S.NODE_ReverseShell".into(), RuleConfig { exceptions: vec![except_shop], ..RuleConfig::default() });
    let (engine, _) = self::engine(&config);
    let mut other_pod = node(NodeEventKind::Exec, 1_000);
    assert!(engine.process(&Event::Node(&other_pod), 0).is_empty(), "excepted by the namespace the pod gave");
    other_pod.pod_uid = Some("uid-2".into());
    assert_eq!(engine.process(&Event::Node(&other_pod), 0).len(), 1, "a pod the table does not know");
}

fn sharded_engine() -> Engine {
    let expired_at = Arc::new(Mutex::new(Vec::new()));
    let fresh: WindowedFactory = Arc::new(move || {
        vec![Box::new(Window { counts: Default::default(), expired_at: expired_at.clone() })
            as Box<dyn WindowedDetector>]
    });
    let units = Registered { stateless: Vec::new(), windowed: fresh(), fresh_windowed: Some(fresh) };
    Engine::with_units(&DetectConfig::default(), units).unwrap()
}

#[test]
fn each_shard_keeps_its_own_windows_and_moves_with_its_changes() {
    let engine = sharded_engine();
    let exec = node(NodeEventKind::Exec, 5_000);
    let event = Event::Node(&exec);
    // Two events of one node on shard t/0 and one on t/1: no shard has three.
    for shard in ["t/0", "t/0", "t/1"] {
        assert!(engine.process_in(shard, Pass::Input, &event, 0).is_empty(), "{shard}");
    }
    let changes = engine.take_changes();
    assert_eq!(changes.iter().map(|c| c.shard.as_str()).collect::<Vec<_>>(), ["t/0", "t/1"]);
    assert_eq!(changes[0].watermark_ms, 5_000);
    assert_eq!(changes[0].states, vec![(WINDOW.id, StateChange::Whole(json!({"node-a": 2})))]);
    assert!(engine.take_changes().is_empty(), "changes are read once");
    // t/0 moves to another instance: restored from its changes, its third event fires there.
    let moved = sharded_engine();
    let whole = |change: &StateChange| match change {
        StateChange::Whole(state) => state.clone(),
        StateChange::Keyed(keyed) => keyed.snapshot(),
    };
    let states = changes[0].states.iter().map(|(key, state)| ((*key).to_owned(), whole(state))).collect();
    assert!(moved.restore_shard("t/0", changes[0].watermark_ms, &states).is_empty());
    assert_eq!(moved.process_in("t/0", Pass::Input, &event, 0).len(), 1);
    assert_eq!(moved.window_keys(), vec![(WINDOW.id, 1)]);
    // A state that does not read is refused, and that detector starts empty.
    let unreadable = BTreeMap::from([(WINDOW.id.to_owned(), json!("not a map"))]);
    let refused = moved.restore_shard("t/0", 0, &unreadable);
    assert_eq!(refused.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>(), [WINDOW.id]);
    assert_eq!(moved.window_keys(), vec![(WINDOW.id, 0)]);
    // Here it is dropped: it starts empty if it comes back.
    engine.drop_shard("t/0");
    assert!(!engine.holds_shard("t/0") && engine.holds_shard("t/1"));
    assert!(engine.process_in("t/0", Pass::Input, &event, 0).is_empty());
    assert_eq!(engine.window_keys(), vec![(WINDOW.id, 2)], "t/0 and t/1 hold node-a each");
}

#[test]
fn audit_events_go_again_by_user_and_only_that_pass_feeds_the_user_baselines() {
    let engine = Engine::new(&DetectConfig::default()).unwrap();
    let mut event = audit("system:serviceaccount:shop:web");
    // A read is not sent to the cluster's joins (they keep object changes only).
    let reads: Vec<_> = engine.rekeys(&Event::Audit(&event)).into_iter().map(|r| r.key).collect();
    assert_eq!(reads, [StateKey::AuditUser]);
    event.verb = "create".into();
    let rekeys = engine.rekeys(&Event::Audit(&event));
    let keys: Vec<_> = rekeys.iter().map(|r| (r.key, r.record_key.as_str())).collect();
    assert_eq!(
        keys,
        [(StateKey::AuditUser, "user/c/system:serviceaccount:shop:web"), (StateKey::AuditCluster, "cluster/c")]
    );
    let sa_keys = |engine: &Engine| {
        let keys = engine.window_keys();
        keys.iter().find(|(id, _)| *id == "K8S_ServiceAccountRareOperation").map(|(_, n)| *n).unwrap()
    };
    engine.process_in("audit/0", Pass::Input, &Event::Audit(&event), 0);
    assert_eq!(sa_keys(&engine), 0, "the input pass leaves the user-keyed baseline alone");
    let pass = Pass::Rekeyed { key: StateKey::AuditUser, context: None };
    engine.process_in("rekeyed/0", pass, &Event::Audit(&event), 0);
    assert_eq!(sa_keys(&engine), 1, "the re-keyed pass feeds it");
    // A node exec goes nowhere else; a host connection goes again by node (workload baselines).
    let exec = node(NodeEventKind::Exec, 1);
    assert!(engine.rekeys(&Event::Node(&exec)).is_empty());
    let mut connect = node(NodeEventKind::NetConnect, 1);
    connect.in_container = false;
    let rekeys = engine.rekeys(&Event::Node(&connect));
    assert_eq!(
        rekeys.iter().map(|r| (r.key, r.record_key.as_str())).collect::<Vec<_>>(),
        [(StateKey::PodNamespace, "node/node-a")]
    );
    // In a container whose pod is not known there is no workload to key by.
    connect.in_container = true;
    assert!(engine.rekeys(&Event::Node(&connect)).is_empty());
}
