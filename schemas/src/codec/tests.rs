//! Golden fixtures: `fixtures/<record>.<version>.json` is the record, `.avro` its single-object bytes as that
//! version wrote them. Regenerate the bytes only for a new schema version: `PALISADE_BLESS=1 cargo test -p
//! palisade-schemas` writes the missing `.avro` files and never overwrites one.

use std::path::PathBuf;

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn load_json<T: Record>(stem: &str) -> T {
    let text = std::fs::read_to_string(fixture(&format!("{stem}.json"))).expect("fixture json");
    serde_json::from_str(&text).expect("fixture parses as the Rust type")
}

fn golden_bytes(stem: &str, produced: &[u8]) -> Vec<u8> {
    let path = fixture(&format!("{stem}.avro"));
    if !path.exists() && std::env::var_os("PALISADE_BLESS").is_some() {
        std::fs::write(&path, produced).expect("write golden");
    }
    std::fs::read(&path).unwrap_or_else(|_| panic!("golden file {} missing", path.display()))
}

fn check_current<T: Record + PartialEq + std::fmt::Debug>(stem: &str) {
    let codec = Codec::<T>::new().expect("schemas parse");
    let record: T = load_json(stem);
    let bytes = codec.encode(&record).expect("encode");
    assert_eq!(bytes, golden_bytes(stem, &bytes), "{stem}: encoding changed; a schema change needs a new version");
    assert_eq!(codec.decode(&bytes).expect("decode"), record, "{stem}: round trip");
}

#[test]
fn node_event_matches_golden_and_round_trips() {
    check_current::<NodeEvent>("node_event.v1");
}

#[test]
fn audit_event_matches_golden_and_round_trips() {
    check_current::<AuditEvent>("audit_event.v1");
}

#[test]
fn cloud_activity_matches_golden_and_round_trips() {
    check_current::<CloudActivity>("cloud_activity.v1");
}

#[test]
fn detection_matches_golden_and_round_trips() {
    check_current::<Detection>("detection.v1");
}

#[test]
fn alert_matches_golden_and_round_trips() {
    check_current::<Alert>("alert.v2");
}

#[test]
fn current_alert_reader_decodes_records_written_by_v1() {
    let codec = Codec::<Alert>::new().unwrap();
    let written_by_v1: Alert = load_json("alert.v1");
    let v1_bytes = codec.encode_version(&written_by_v1, "v1").unwrap();
    assert_eq!(v1_bytes, golden_bytes("alert.v1", &v1_bytes), "v1 writer output changed");
    let decoded = codec.decode(&v1_bytes).expect("current reader decodes v1");
    assert_eq!(decoded.count, 1, "default filled for a field v1 did not have");
    assert_eq!(decoded.locale, "en");
    assert_eq!(decoded.first_seen_ms, None);
    assert_eq!(decoded.alert_type, written_by_v1.alert_type);
    assert_eq!(decoded.process, written_by_v1.process);
}

#[test]
fn every_version_has_a_distinct_fingerprint() {
    let codec = Codec::<Alert>::new().unwrap();
    assert_ne!(codec.versions[0].1, codec.versions[1].1);
    assert_eq!(codec.current_version(), "v2");
}

#[test]
fn garbage_is_a_typed_error_not_a_panic() {
    let codec = Codec::<NodeEvent>::new().unwrap();
    assert!(matches!(codec.decode(b"{\"kind\":\"EXEC\"}"), Err(CodecError::NotSingleObject { .. })));
    let mut unknown = vec![0xC3, 0x01];
    unknown.extend_from_slice(&[0xAB; 8]);
    assert!(matches!(codec.decode(&unknown), Err(CodecError::UnknownFingerprint { .. })));
    let audit = Codec::<AuditEvent>::new().unwrap();
    let mut truncated = audit.encode(&load_json("audit_event.v1")).unwrap();
    truncated.truncate(20);
    assert!(matches!(audit.decode(&truncated), Err(CodecError::Avro { .. })));
}
