//! Baselines: for each key (a service account, a namespace, a cloud identity), the operations seen during its
//! learning period in event time. After the period, an operation the profile does not hold is new: it is reported
//! once and then joins the profile. Learning starts at a key's first event, so a key that appears late learns for
//! its own period. State is plain maps, serialisable for checkpoints, bounded by `max_keys` and `max_operations`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::keyed::{Keyed, KeyedChanges};
use crate::unit::LearningState;

/// Learning settings of one baseline detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// How long each key learns, in seconds of event time, from its first event.
    #[serde(default = "default_learning_secs")]
    pub learning_secs: u64,
    /// Most keys held; the least recently seen go first (and learn again if they come back).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Most operations held per key. A full profile still reports new operations but learns no more.
    #[serde(default = "default_max_operations")]
    pub max_operations: usize,
}

const fn default_learning_secs() -> u64 {
    7 * 24 * 3600
}
const fn default_max_keys() -> usize {
    50_000
}
const fn default_max_operations() -> usize {
    2_000
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            learning_secs: default_learning_secs(),
            max_keys: default_max_keys(),
            max_operations: default_max_operations(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Profile {
    started_ms: i64,
    last_ms: i64,
    operations: BTreeSet<String>,
}

/// What one observation was against its key's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is still learning; the operation was learned.
    Learning,
    /// Seen before.
    Known,
    /// Never seen, after learning: report it.
    New { learned_since_ms: i64, known_operations: usize },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiles {
    #[serde(skip)]
    config: BaselineConfig,
    profiles: Keyed<Profile>,
    watermark_ms: i64,
}

impl Profiles {
    pub fn new(config: BaselineConfig) -> Self {
        Self { config, profiles: Keyed::default(), watermark_ms: 0 }
    }

    fn learning_ms(&self) -> i64 {
        i64::try_from(self.config.learning_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    pub fn observe(&mut self, key: &str, operation: &str, at_ms: i64) -> Verdict {
        self.watermark_ms = self.watermark_ms.max(at_ms);
        let learning_ms = self.learning_ms();
        if !self.profiles.contains_key(key) {
            self.make_room();
        }
        let profile = self.profiles.get_or_insert_with(key, || Profile {
            started_ms: at_ms,
            last_ms: at_ms,
            operations: BTreeSet::new(),
        });
        // An event older than the first one seen (out of order) moves the start back.
        profile.started_ms = profile.started_ms.min(at_ms);
        profile.last_ms = profile.last_ms.max(at_ms);
        if profile.operations.contains(operation) {
            return Verdict::Known;
        }
        let room = profile.operations.len() < self.config.max_operations.max(1);
        if at_ms < profile.started_ms.saturating_add(learning_ms) {
            if room {
                profile.operations.insert(operation.to_owned());
            }
            return Verdict::Learning;
        }
        let verdict = Verdict::New { learned_since_ms: profile.started_ms, known_operations: profile.operations.len() };
        if room {
            profile.operations.insert(operation.to_owned());
        }
        verdict
    }

    /// Evicts the key seen longest ago when the map is full.
    fn make_room(&mut self) {
        while self.profiles.len() >= self.config.max_keys.max(1) {
            let Some(oldest) = self.profiles.iter().min_by_key(|(_, p)| p.last_ms).map(|(k, _)| k.clone()) else {
                break;
            };
            self.profiles.remove(&oldest);
        }
    }

    pub fn learning_state(&self) -> LearningState {
        let learning_ms = self.learning_ms();
        let learning =
            self.profiles.values().filter(|p| self.watermark_ms < p.started_ms.saturating_add(learning_ms)).count();
        LearningState { learning, active: self.profiles.len() - learning }
    }

    pub fn keys(&self) -> usize {
        self.profiles.len()
    }

    /// For the changelog: the profiles changed since the last call, and the clock.
    pub fn keyed_changes(&mut self) -> KeyedChanges {
        let (all, entries) = self.profiles.changed_entries();
        let rest = serde_json::json!({"watermark_ms": self.watermark_ms});
        KeyedChanges { field: "profiles", all, rest, entries }
    }

    pub fn record_changes_from_now(&mut self) {
        self.profiles.record_from_now();
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Restores a snapshot, keeping this instance's configuration.
    pub fn restore(&mut self, state: &serde_json::Value) -> Result<(), String> {
        let restored: Profiles = serde_json::from_value(state.clone()).map_err(|e| e.to_string())?;
        self.profiles = restored.profiles;
        self.watermark_ms = restored.watermark_ms;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles(learning_secs: u64) -> Profiles {
        Profiles::new(BaselineConfig { learning_secs, max_keys: 3, max_operations: 10 })
    }

    #[test]
    fn learns_for_the_period_then_reports_each_new_operation_once() {
        let mut p = profiles(60);
        assert_eq!(p.observe("sa", "get pods", 1_000), Verdict::Learning);
        assert_eq!(p.observe("sa", "list pods", 30_000), Verdict::Learning);
        assert_eq!(p.observe("sa", "get pods", 61_000), Verdict::Known);
        assert_eq!(
            p.observe("sa", "list secrets", 61_000),
            Verdict::New { learned_since_ms: 1_000, known_operations: 2 }
        );
        assert_eq!(p.observe("sa", "list secrets", 62_000), Verdict::Known);
        // Another key learns for its own period.
        assert_eq!(p.observe("other", "list secrets", 62_000), Verdict::Learning);
        assert_eq!(p.learning_state(), LearningState { learning: 1, active: 1 });
    }

    #[test]
    fn a_restored_snapshot_resumes_learning_where_it_stopped() {
        let mut p = profiles(60);
        p.observe("sa", "get pods", 1_000);
        let saved = p.snapshot();
        let mut restored = profiles(60);
        restored.restore(&saved).unwrap();
        assert_eq!(restored.observe("sa", "list pods", 50_000), Verdict::Learning, "still inside the period");
        assert_eq!(restored.observe("sa", "get pods", 70_000), Verdict::Known);
        assert!(matches!(restored.observe("sa", "delete pods", 70_000), Verdict::New { .. }));
        // Without the snapshot, the same event would have started learning again.
        assert_eq!(profiles(60).observe("sa", "delete pods", 70_000), Verdict::Learning);
    }

    #[test]
    fn bounded_by_keys_and_operations() {
        let mut p = profiles(0);
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            p.observe(key, "op", i as i64);
        }
        assert_eq!(p.keys(), 3, "the oldest key went");
        let mut p = Profiles::new(BaselineConfig { learning_secs: 60, max_keys: 3, max_operations: 2 });
        for op in ["a", "b", "c"] {
            p.observe("k", op, 0);
        }
        assert!(matches!(p.observe("k", "c", 61_000), Verdict::New { .. }), "not learned: the profile was full");
    }
}
