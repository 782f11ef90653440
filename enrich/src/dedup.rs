//! Deduplication: alerts of one type about one entity within one event-time window fold into a single alert
//! with a count and first/last seen. The first is sent at once; later ones only raise the count, and `flush`
//! returns the groups whose count changed so they are sent again under the same id (the index keeps one
//! document per group; the alerts topic carries the updates under one key). Windows are tumbling buckets of
//! event time, so a replay groups exactly as the original run did.

use std::collections::HashMap;

use palisade_schemas::Alert;
use palisade_schemas::bounds::{MAX_ALERT_EVIDENCE_BYTES, fit_text};
use sha2::{Digest, Sha256};

/// Evidence events kept per group (the first ones); the count says how many there were.
const EVIDENCE_KEPT: usize = 5;
/// Evidence folded in only while at least this much of the group's evidence budget is left.
const EVIDENCE_MIN_ROOM_BYTES: usize = 4096;

struct Group {
    alert: Alert,
    bucket: i64,
    dirty: bool,
}

pub struct Deduplicator {
    window_ms: i64,
    groups: HashMap<String, Group>,
    latest_event_ms: i64,
}

fn entity(alert: &Alert) -> String {
    let field = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        alert.alert_type.clone(),
        field(&alert.cluster),
        field(&alert.namespace),
        alert.workload.clone().or_else(|| alert.pod.clone()).unwrap_or_default(),
        field(&alert.container_id),
        field(&alert.node),
        field(&alert.user),
        alert.process.as_ref().map(|p| p.executable.clone()).unwrap_or_default(),
    ]
    .join("\u{1f}")
}

impl Deduplicator {
    /// `window_secs` 0 turns deduplication off: every alert passes through unchanged.
    pub fn new(window_secs: u64) -> Self {
        Self { window_ms: (window_secs * 1000) as i64, groups: HashMap::new(), latest_event_ms: i64::MIN }
    }

    pub fn enabled(&self) -> bool {
        self.window_ms > 0
    }

    /// The alert to send now (the first of its group), or `None` when it was folded into an open group.
    pub fn observe(&mut self, mut alert: Alert) -> Option<Alert> {
        if !self.enabled() {
            return Some(alert);
        }
        self.latest_event_ms = self.latest_event_ms.max(alert.timestamp_ms);
        let bucket = alert.timestamp_ms.div_euclid(self.window_ms);
        let key = format!("{}\u{1e}{bucket}", entity(&alert));
        if let Some(group) = self.groups.get_mut(&key) {
            let folded = &mut group.alert;
            folded.count += 1;
            folded.first_seen_ms = folded.first_seen_ms.min(Some(alert.timestamp_ms)).or(Some(alert.timestamp_ms));
            folded.last_seen_ms = folded.last_seen_ms.max(Some(alert.timestamp_ms));
            // Within MAX_ALERT_EVIDENCE_BYTES in all: five large events (a ConfigMap logged at RequestResponse)
            // would make an alert too large for the bus, and it would be dead-lettered instead of updated.
            for piece in alert.evidence {
                let used: usize = folded.evidence.iter().map(String::len).sum();
                let room = MAX_ALERT_EVIDENCE_BYTES.saturating_sub(used);
                if folded.evidence.len() >= EVIDENCE_KEPT || room < EVIDENCE_MIN_ROOM_BYTES {
                    break;
                }
                folded.evidence.push(fit_text(piece, room));
            }
            group.dirty = true;
            return None;
        }
        alert.id = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
        alert.count = 1;
        alert.first_seen_ms = Some(alert.timestamp_ms);
        alert.last_seen_ms = Some(alert.timestamp_ms);
        self.groups.insert(key, Group { alert: alert.clone(), bucket, dirty: false });
        Some(alert)
    }

    /// Groups whose count changed since the last flush; groups whose window closed a window ago are dropped.
    pub fn flush(&mut self) -> Vec<Alert> {
        let mut updates = Vec::new();
        for group in self.groups.values_mut() {
            if group.dirty {
                group.dirty = false;
                updates.push(group.alert.clone());
            }
        }
        if self.latest_event_ms != i64::MIN {
            let current = self.latest_event_ms.div_euclid(self.window_ms.max(1));
            self.groups.retain(|_, group| group.bucket + 1 >= current);
        }
        updates
    }

    pub fn open_groups(&self) -> usize {
        self.groups.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(alert_type: &str, namespace: &str, timestamp_ms: i64) -> Alert {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/fixtures/alert.v2.json")).unwrap();
        let mut alert: Alert = serde_json::from_str(&text).unwrap();
        alert.alert_type = alert_type.to_owned();
        alert.namespace = Some(namespace.to_owned());
        alert.timestamp_ms = timestamp_ms;
        alert.count = 1;
        alert
    }

    #[test]
    fn a_burst_of_identical_alerts_becomes_one_with_a_count() {
        let mut dedup = Deduplicator::new(60);
        let first = dedup.observe(alert("K8S_DeleteEvents", "a", 1_000)).expect("the first is sent at once");
        for offset in 1..1000 {
            assert!(dedup.observe(alert("K8S_DeleteEvents", "a", 1_000 + offset * 10)).is_none());
        }
        let updates = dedup.flush();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].id, first.id, "the update replaces the first alert");
        assert_eq!(updates[0].count, 1000);
        assert_eq!(updates[0].first_seen_ms, Some(1_000));
        assert_eq!(updates[0].last_seen_ms, Some(1_000 + 999 * 10));
        assert!(updates[0].evidence.len() <= EVIDENCE_KEPT);
    }

    #[test]
    fn folded_evidence_stays_within_the_budget_and_the_alert_fits_the_bus() {
        let mut dedup = Deduplicator::new(600);
        let event = |n: usize| {
            serde_json::json!({"kind": "Event", "auditID": format!("a{n}"),
            "requestObject": {"data": {"big": "d".repeat(190_000)}}})
            .to_string()
        };
        for n in 0..8 {
            let mut one = alert("K8S_CoreDnsModification", "kube-system", 1_000 + n as i64);
            one.evidence = vec![event(n)];
            dedup.observe(one);
        }
        let updates = dedup.flush();
        let folded = &updates[0];
        assert_eq!(folded.count, 8);
        let total: usize = folded.evidence.iter().map(String::len).sum();
        assert!(total <= MAX_ALERT_EVIDENCE_BYTES, "{total}");
        assert!(folded.evidence.len() >= 2, "a second event still fits, shrunk");
        for piece in &folded.evidence {
            serde_json::from_str::<serde_json::Value>(piece).expect("shrunk evidence is still JSON");
        }
        let encoded = palisade_schemas::Codec::<Alert>::new().unwrap().encode(folded).unwrap();
        assert!(encoded.len() < 1_000_000, "{} bytes", encoded.len());
        assert!(dedup.flush().is_empty(), "nothing changed since");
    }

    #[test]
    fn other_entities_types_and_windows_stay_apart() {
        let mut dedup = Deduplicator::new(60);
        let a = dedup.observe(alert("K8S_DeleteEvents", "a", 1_000)).unwrap();
        let b = dedup.observe(alert("K8S_DeleteEvents", "b", 1_000)).unwrap();
        let c = dedup.observe(alert("K8S_PrivilegedContainer", "a", 1_000)).unwrap();
        let later = dedup.observe(alert("K8S_DeleteEvents", "a", 61_000)).unwrap();
        let ids = [a.id, b.id, c.id, later.id];
        assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 4);
        // Same input, same ids: replays group identically.
        let mut again = Deduplicator::new(60);
        assert_eq!(again.observe(alert("K8S_DeleteEvents", "a", 1_500)).unwrap().id, ids[0]);
    }

    #[test]
    fn closed_windows_are_forgotten_and_zero_disables() {
        let mut dedup = Deduplicator::new(60);
        dedup.observe(alert("K8S_DeleteEvents", "a", 1_000));
        dedup.observe(alert("K8S_DeleteEvents", "a", 200_000));
        dedup.flush();
        assert_eq!(dedup.open_groups(), 1);
        let mut off = Deduplicator::new(0);
        let original = alert("K8S_DeleteEvents", "a", 1_000);
        assert_eq!(off.observe(original.clone()), Some(original));
    }
}
