//! Every tactic and technique an alert type declares is known to the sink's ATT&CK table, so each indexed alert
//! has its `threat.*` names and references (the catalogue and the table live in different crates).

#[test]
fn every_declared_technique_and_tactic_is_named_for_the_index() {
    let intents = ["Exploitation", "Probing", "Unknown"];
    for meta in palisade_detect::catalogue::CATALOGUE {
        for technique in meta.techniques {
            assert!(palisade_sink::attack::technique_name(technique).is_some(), "{}: {technique} has no name", meta.id);
        }
        for tactic in meta.tactics {
            assert!(
                palisade_sink::attack::tactic_id(tactic).is_some() || intents.contains(tactic),
                "{}: tactic {tactic} is neither ATT&CK nor a known Defender intent",
                meta.id
            );
        }
    }
}
