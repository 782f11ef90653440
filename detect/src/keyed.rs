//! A windowed unit's state by key (container, identity, service account) that remembers which keys changed, so the
//! detect stage's changelog writes one record per changed key instead of the whole state. It records nothing until
//! the changelog first asks (`take_changed`): a stage that checkpoints to a file keeps no list. It serialises as
//! the plain map, so checkpoints read the same with it or without it.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use crate::unit::KeyedChanges;

/// What changed since the changelog last asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Nothing was recorded before (the first call): every key is to be written, and whatever the changelog held
    /// for this state before is to be replaced.
    All,
    /// These keys changed or went (each once, in no particular order).
    Keys(Vec<String>),
}

/// What to do with an entry, from `Keyed::update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Keep,
    /// Kept, and its state changed.
    Changed,
    Remove,
}

#[derive(Debug, Clone)]
pub struct Keyed<V> {
    map: HashMap<String, V>,
    changed: HashSet<String>,
    recording: bool,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), changed: HashSet::new(), recording: false }
    }
}

impl<V: PartialEq> PartialEq for Keyed<V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<V: Eq> Eq for Keyed<V> {}

impl<V: Serialize> Serialize for Keyed<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(serializer)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Keyed<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self { map: HashMap::deserialize(deserializer)?, ..Self::default() })
    }
}

impl<V> Keyed<V> {
    fn mark(&mut self, key: &str) {
        if self.recording && !self.changed.contains(key) {
            self.changed.insert(key.to_owned());
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.map.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    /// The entry of `key`, to change: recorded as changed.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        if self.map.contains_key(key) {
            self.mark(key);
        }
        self.map.get_mut(key)
    }

    /// The entry of `key`, made with `make` when there is none: recorded as changed.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        self.mark(key);
        if !self.map.contains_key(key) {
            self.map.insert(key.to_owned(), make());
        }
        self.map.get_mut(key).expect("inserted above")
    }

    pub fn insert(&mut self, key: String, value: V) {
        self.mark(&key);
        self.map.insert(key, value);
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let removed = self.map.remove(key);
        if removed.is_some() {
            self.mark(key);
        }
        removed
    }

    /// Keeps the entries `keep` says to (it does not change them); the others go, recorded.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &V) -> bool) {
        self.update(|key, value| if keep(key, value) { Update::Keep } else { Update::Remove });
    }

    /// Visits every entry, which `visit` may change: it says whether it did, or that the entry goes.
    pub fn update(&mut self, mut visit: impl FnMut(&str, &mut V) -> Update) {
        let (recording, changed) = (self.recording, &mut self.changed);
        self.map.retain(|key, value| {
            let update = visit(key, value);
            if recording && update != Update::Keep && !changed.contains(key) {
                changed.insert(key.clone());
            }
            update != Update::Remove
        });
    }

    /// Every entry, for what is not part of the serialised state (counts rebuilt on restore): not recorded.
    pub fn values_mut_unrecorded(&mut self) -> impl Iterator<Item = &mut V> {
        self.map.values_mut()
    }

    /// Evicts the key seen longest ago (by `last_ms`) while the map holds `max_keys` or more.
    pub fn make_room(&mut self, max_keys: usize, last_ms: impl Fn(&V) -> i64) {
        while self.map.len() >= max_keys.max(1) {
            let Some(oldest) = self.map.iter().min_by_key(|(_, value)| last_ms(value)).map(|(k, _)| k.clone()) else {
                break;
            };
            self.remove(&oldest);
        }
    }

    /// What changed since the last call (`Changed::All` on the first), and records from now on.
    pub fn take_changed(&mut self) -> Changed {
        if !std::mem::replace(&mut self.recording, true) {
            self.changed.clear();
            return Changed::All;
        }
        Changed::Keys(self.changed.drain().collect())
    }

    /// Records from now on, with nothing changed yet: the state was just read back from the records it would
    /// write.
    pub fn record_from_now(&mut self) {
        self.recording = true;
        self.changed.clear();
    }
}

impl<V: Serialize> Keyed<V> {
    /// The serialised state of `key`; `None` when it is gone.
    pub fn entry_value(&self, key: &str) -> Option<Value> {
        self.map.get(key).map(|value| serde_json::to_value(value).unwrap_or_default())
    }

    /// For the changelog: what changed since the last call, each key with its state now (`None`: gone).
    pub fn changed_entries(&mut self) -> (bool, Vec<(String, Option<Value>)>) {
        match self.take_changed() {
            Changed::All => (true, self.map.keys().map(|key| (key.clone(), self.entry_value(key))).collect()),
            Changed::Keys(keys) => (
                false,
                keys.into_iter()
                    .map(|key| {
                        let value = self.entry_value(&key);
                        (key, value)
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_nothing_until_asked_then_every_change_once() {
        let mut keyed: Keyed<i64> = Keyed::default();
        keyed.insert("a".into(), 1);
        *keyed.get_or_insert_with("b", || 0) += 2;
        // Not recording yet: the first question is answered with everything.
        assert_eq!(keyed.take_changed(), Changed::All);
        assert_eq!(keyed.take_changed(), Changed::Keys(vec![]));
        // Reads record nothing; each way of changing records the key.
        assert_eq!(keyed.get("a"), Some(&1));
        assert!(keyed.get_mut("missing").is_none());
        *keyed.get_mut("a").unwrap() += 1;
        keyed.insert("c".into(), 3);
        *keyed.get_or_insert_with("c", || 0) += 1;
        let changed = |keyed: &mut Keyed<i64>| match keyed.take_changed() {
            Changed::Keys(mut keys) => {
                keys.sort();
                keys
            }
            Changed::All => panic!("recording"),
        };
        assert_eq!(changed(&mut keyed), ["a", "c"]);
        // Removals, evictions and updates that say so; an update that keeps as is records nothing.
        keyed.remove("a");
        keyed.update(|key, value| match key {
            "b" => {
                *value += 1;
                Update::Changed
            }
            _ => Update::Keep,
        });
        assert_eq!(changed(&mut keyed), ["a", "b"]);
        keyed.make_room(2, |value| *value);
        assert_eq!(keyed.len(), 1);
        keyed.retain(|_, _| false);
        assert_eq!(changed(&mut keyed), ["b", "c"]);
        assert!(keyed.is_empty());
    }

    #[test]
    fn serialises_as_the_plain_map_and_reads_back_not_recording() {
        let mut keyed: Keyed<i64> = Keyed::default();
        keyed.record_from_now();
        keyed.insert("a".into(), 1);
        let json = serde_json::to_value(&keyed).unwrap();
        assert_eq!(json, serde_json::json!({"a": 1}));
        let mut back: Keyed<i64> = serde_json::from_value(json).unwrap();
        assert_eq!(back, keyed);
        assert_eq!(back.take_changed(), Changed::All);
        back.record_from_now();
        back.insert("b".into(), 2);
        let (all, entries) = back.changed_entries();
        assert!(!all);
        assert_eq!(entries, [("b".to_owned(), Some(serde_json::json!(2)))]);
    }
}
