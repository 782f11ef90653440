use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::catalogue::CATALOGUE;
use crate::unit::{AlertTypeMeta, DetectionKind, Input};

#[test]
fn catalogue_has_58_unique_ids_each_with_tactics_and_techniques() {
    let ids: BTreeSet<&str> = CATALOGUE.iter().map(|m| m.id).collect();
    assert_eq!(CATALOGUE.len(), 58);
    assert_eq!(ids.len(), 58, "duplicate IDs in the catalogue");
    for meta in CATALOGUE {
        assert!(!meta.tactics.is_empty() && !meta.techniques.is_empty(), "{}", meta.id);
        assert!(meta.techniques.iter().all(|t| t.starts_with('T')), "{}", meta.id);
    }
}

/// Every ID's metadata is declared once, in the file its `unit` names.
#[test]
fn every_catalogue_id_is_declared_by_exactly_one_unit() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut declared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let relative = path.strip_prefix(workspace).unwrap().display().to_string();
            for (at, _) in text.match_indices("&AlertTypeMeta {\n") {
                let id = text[at..].split('"').nth(1).unwrap().to_owned();
                declared.entry(id).or_default().push(relative.clone());
            }
        }
    }
    for meta in CATALOGUE {
        let files = declared.remove(meta.id).unwrap_or_default();
        assert_eq!(
            files,
            vec![meta.unit.to_owned()],
            "{}: declared in {files:?}, its unit says {}",
            meta.id,
            meta.unit
        );
    }
    assert!(declared.is_empty(), "declared but not in the catalogue: {declared:?}");
}

#[test]
fn the_registered_units_raise_exactly_the_catalogue() {
    let registered = detectors(&DetectConfig::default()).unwrap();
    let mut raised: Vec<&AlertTypeMeta> = registered.stateless.iter().flat_map(|d| d.metas()).collect();
    raised.extend(registered.windowed.iter().flat_map(|d| d.metas()));
    for meta in &raised {
        assert_eq!(crate::catalogue::lookup(meta.id), Some(*meta), "{} is raised but not catalogued as is", meta.id);
    }
    let unique: BTreeSet<&str> = raised.iter().map(|meta| meta.id).collect();
    let catalogue: BTreeSet<&str> = CATALOGUE.iter().map(|meta| meta.id).collect();
    assert_eq!(unique, catalogue, "every catalogue ID has a registered unit");
    // Only a match type with a learned or windowed half is raised twice: by its rule and by that half.
    for id in &unique {
        let count = raised.iter().filter(|meta| meta.id == *id).count();
        let meta = crate::catalogue::lookup(id).unwrap();
        let halves = meta.learned.is_some() || meta.windowed.is_some();
        assert_eq!(count, if halves { 2 } else { 1 }, "{id}");
    }
}

/// The declared kind is the trait the unit implements: a stateless unit is a match; a windowed unit with learning
/// state is a baseline (or the learned half of a match); any other windowed unit keeps a window or a join table.
#[test]
fn the_declared_kind_matches_the_trait_the_unit_implements() {
    let registered = detectors(&DetectConfig::default()).unwrap();
    let mut wrong = Vec::new();
    for detector in &registered.stateless {
        for meta in detector.metas() {
            if meta.kind != DetectionKind::Match {
                wrong.push(format!("{} is decided by a stateless unit, not {:?}", meta.id, meta.kind));
            }
        }
    }
    for detector in &registered.windowed {
        for meta in detector.metas() {
            if detector.learning().is_some() {
                let half = meta.kind == DetectionKind::Match && meta.learned.is_some();
                if meta.kind != DetectionKind::Baseline && !half {
                    wrong.push(format!("{} is decided by a baseline, not {:?}", meta.id, meta.kind));
                }
            } else {
                let windowed_half = meta.kind == DetectionKind::Match && meta.windowed.is_some();
                if !(matches!(meta.kind, DetectionKind::Window | DetectionKind::Join) || windowed_half) {
                    wrong.push(format!("{} keeps a window or a join table, not {:?}", meta.id, meta.kind));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn inputs_are_of_the_declared_source_and_audit_types_name_their_policy_level() {
    for meta in CATALOGUE {
        assert!(!meta.inputs.is_empty(), "{} reads nothing", meta.id);
        assert!(meta.inputs.iter().all(|input| input.source() == meta.source), "{}", meta.id);
        let unique: BTreeSet<usize> = meta.inputs.iter().map(|input| input.index()).collect();
        assert_eq!(unique.len(), meta.inputs.len(), "{}: an input twice", meta.id);
        let audit = meta.inputs.contains(&Input::Audit);
        let level = meta.audit_level.is_some_and(|level| level.starts_with("Metadata") || level.starts_with("Request"));
        assert_eq!(audit, level, "{}: audit types, and only they, need an audit-policy level", meta.id);
        assert!(!meta.false_positives.is_empty(), "{}", meta.id);
    }
}

/// Checkpoints are keyed by these; a restart after an upgrade restores only what keeps its key.
#[test]
fn checkpoint_keys_are_unique_and_stable() {
    let registered = detectors(&DetectConfig::default()).unwrap();
    let keys: Vec<&str> = registered.windowed.iter().map(|d| d.checkpoint_key()).collect();
    let unique: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
    let expected = BTreeSet::from([
        "K8S.NODE_DownloadAndRunCombo",
        "K8S.NODE_ImdsCall",
        "K8S.NODE_KubernetesAPI",
        "K8S.NODE_LinuxBackdoorArtifact",
        "K8S.NODE_ReconnaissanceArtifactsBurst",
        "K8S.NODE_SuspectPasswordFileAccess",
        "K8S_AbnormalMiActivity",
        "K8S_ExposedPostgresTrustAuth",
        "K8S_KubeSystemContainer",
        "K8S_PenTestToolsKubeHunter",
        "K8S_ServiceAccountRareOperation",
    ]);
    assert_eq!(unique, expected);
    // The changelog names a keyed state's records `<detector>/<key>` and a chunk `<detector>#<n>`.
    assert!(keys.iter().all(|key| !key.contains(['/', '#'])), "{keys:?}");
}

/// A keyed detector's first changes hold every entry: with its rest they are its whole state, so a restore from
/// its changelog records gives it back (a field left out of the rest would be lost at every restore).
#[test]
fn keyed_changes_put_back_together_are_the_whole_state() {
    let mut registered = detectors(&DetectConfig::default()).unwrap();
    let mut keyed = 0;
    for detector in &mut registered.windowed {
        let whole = detector.snapshot();
        let Some(changes) = detector.take_keyed_changes() else { continue };
        keyed += 1;
        assert!(changes.all, "{}: the first changes hold every entry", detector.checkpoint_key());
        assert_eq!(changes.snapshot(), whole, "{}", detector.checkpoint_key());
        let again = detector.take_keyed_changes().unwrap();
        assert!(!again.all && again.entries.is_empty(), "{}: nothing changed since", detector.checkpoint_key());
    }
    assert_eq!(keyed, 10, "every windowed detector but the cluster-state joins");
}
