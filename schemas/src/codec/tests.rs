//! Golden fixtures: `fixtures/<record>.<version>.json` is the record, `.avro` its single-object bytes as that
//! version wrote them. Regenerate the bytes only for a new schema version: `PALISADE_BLESS=1 cargo test -p
//! palisade-schemas` writes the missing `.avro` files and never overwrites one.

use std::path::PathBuf;

use super::*;
use crate::{FileDetail, NamespaceDetail, NodeEventKind, PrivilegeDetail, ProcessRef, SignalDetail};

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
    check_current::<NodeEvent>("node_event.v2");
}

#[test]
fn current_node_event_reader_decodes_records_written_by_v1() {
    let codec = Codec::<NodeEvent>::new().unwrap();
    let written_by_v1: NodeEvent = load_json("node_event.v1");
    let v1_bytes = codec.encode_version(&written_by_v1, "v1").unwrap();
    assert_eq!(v1_bytes, golden_bytes("node_event.v1", &v1_bytes), "v1 writer output changed");
    let decoded = codec.decode(&v1_bytes).expect("current reader decodes v1");
    assert_eq!(decoded, written_by_v1, "v1 had no CRI fields, and none are invented");
    assert_eq!(codec.current_version(), "v2");
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
fn cluster_object_matches_golden_and_round_trips() {
    check_current::<ClusterObject>("cluster_object.v1");
}

#[test]
fn detection_matches_golden_and_round_trips() {
    check_current::<Detection>("detection.v2");
}

#[test]
fn current_detection_reader_decodes_records_written_by_v1() {
    let codec = Codec::<Detection>::new().unwrap();
    let written_by_v1: Detection = load_json("detection.v1");
    let v1_bytes = codec.encode_version(&written_by_v1, "v1").unwrap();
    assert_eq!(v1_bytes, golden_bytes("detection.v1", &v1_bytes), "v1 writer output changed");
    let decoded = codec.decode(&v1_bytes).expect("current reader decodes v1");
    assert_eq!(decoded, written_by_v1, "v1 had no pod UID, and none is invented");
    assert_eq!(codec.current_version(), "v2");
}

#[test]
fn alert_matches_golden_and_round_trips() {
    // One pod label: Avro maps are written in hash order, so a golden file of two would not be stable.
    check_current::<Alert>("alert.v4");
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
fn current_alert_reader_decodes_records_written_by_v2() {
    let codec = Codec::<Alert>::new().unwrap();
    let written_by_v2: Alert = load_json("alert.v2");
    let v2_bytes = codec.encode_version(&written_by_v2, "v2").unwrap();
    assert_eq!(v2_bytes, golden_bytes("alert.v2", &v2_bytes), "v2 writer output changed");
    let decoded = codec.decode(&v2_bytes).expect("current reader decodes v2");
    assert!(decoded.threat_intel.is_empty() && decoded.unknown_fields.is_empty(), "v3 defaults filled");
    assert_eq!(decoded.count, written_by_v2.count);
    assert_eq!(decoded.locale, written_by_v2.locale);
}

#[test]
fn current_alert_reader_decodes_records_written_by_v3() {
    let codec = Codec::<Alert>::new().unwrap();
    let written_by_v3: Alert = load_json("alert.v3");
    let v3_bytes = codec.encode_version(&written_by_v3, "v3").unwrap();
    assert_eq!(v3_bytes, golden_bytes("alert.v3", &v3_bytes), "v3 writer output changed");
    let decoded = codec.decode(&v3_bytes).expect("current reader decodes v3");
    assert!(decoded.pod_labels.is_empty(), "v4 default filled");
    assert_eq!(decoded.threat_intel, written_by_v3.threat_intel);
    assert_eq!(decoded.unknown_fields, written_by_v3.unknown_fields);
}

#[test]
fn every_version_has_a_distinct_fingerprint() {
    let codec = Codec::<Alert>::new().unwrap();
    for pair in codec.versions.windows(2) {
        assert_ne!(pair[0].1, pair[1].1);
    }
    assert_eq!(codec.current_version(), "v4");
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
    assert!(matches!(audit.decode(&truncated), Err(CodecError::Datum { .. })));
}

#[test]
fn hand_read_audit_events_equal_what_apache_avro_wrote() {
    let codec = Codec::<AuditEvent>::new().unwrap();
    let base: AuditEvent = load_json("audit_event.v1");
    let mut bare = base.clone();
    bare.user_groups.clear();
    bare.impersonated_user = None;
    bare.source_ips.clear();
    bare.user_agent = None;
    bare.resource = None;
    bare.subresource = None;
    bare.namespace = None;
    bare.name = None;
    bare.api_group = None;
    bare.api_version = None;
    bare.response_code = None;
    bare.request_object = None;
    bare.response_object = None;
    bare.annotations.clear();
    let mut full = base.clone();
    full.impersonated_user = Some("system:serviceaccount:ä:b".into());
    full.user_groups = (0..200).map(|i| format!("group-{i}")).collect();
    full.response_code = Some(-1);
    full.stage_ms = i64::MAX;
    full.request_received_ms = i64::MIN;
    full.request_object = Some("x".repeat(70_000));
    full.annotations = (0..40).map(|i| (format!("k{i}/ü"), format!("v{i}"))).collect();
    for event in [base, bare, full] {
        let bytes = codec.encode(&event).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), event);
        let mut datum = std::io::Cursor::new(&bytes[HEADER_LEN..]);
        let value = from_avro_datum(codec.current_schema(), &mut datum, None).expect("apache-avro reads");
        assert_eq!(from_value::<AuditEvent>(&value).unwrap(), event, "both readers agree");
        for cut in [HEADER_LEN + 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(matches!(codec.decode(&bytes[..cut]), Err(CodecError::Datum { .. })), "cut at {cut}");
        }
    }
}

/// NodeEvents covering every union branch, empty and long arrays, extreme longs and non-ASCII text.
fn node_event_variants() -> Vec<NodeEvent> {
    let base: NodeEvent = load_json("node_event.v2");
    let mut bare = base.clone();
    bare.executable = None;
    bare.argv.clear();
    bare.cwd = None;
    bare.stdio.clear();
    bare.capabilities_effective = None;
    bare.container_id = None;
    bare.pod_uid = None;
    bare.container_name = None;
    bare.image = None;
    bare.pod_name = None;
    bare.pod_namespace = None;
    bare.in_container = false;
    bare.ancestry.clear();
    bare.net = None;
    let mut full = base.clone();
    full.tty = Some("/dev/pts/ä3".into());
    full.argv = (0..300).map(|i| format!("arg-{i}-ü")).collect();
    full.argv_truncated = true;
    full.exit_code = Some(-1);
    full.clone_flags = Some(i64::MIN);
    full.kernel_time_ns = i64::MAX;
    full.pid = -7;
    full.file = Some(FileDetail {
        path: "/home/a/.bash_history".into(),
        new_path: Some("/dev/null".into()),
        flags: 0o1101,
        mode: Some(0o600),
        owner_uid: Some(1000),
        owner_gid: None,
        atime_ns: Some(1),
        mtime_ns: Some(-63),
    });
    full.namespace = Some(NamespaceDetail { syscall: "unshare".into(), flags: 0x4000_0000 });
    full.signal = Some(SignalDetail { signal: 9, target_pid: 64, target_executable: None });
    full.privilege =
        Some(PrivilegeDetail { syscall: "capset".into(), new_uid: None, new_gid: Some(0), new_capabilities: Some(-1) });
    full.ancestry = (0..70)
        .map(|i| ProcessRef { pid: i, executable: format!("/p/{i}"), argv: vec!["x".into(); i as usize % 3] })
        .collect();
    if let Some(net) = full.net.as_mut() {
        net.payload_head = Some(vec![0x05, 0x01, 0x00, 0xFF]);
        net.src_addr = None;
    }
    let mut variants = vec![base, bare, full];
    for (index, kind) in NodeEventKind::ALL.iter().enumerate() {
        let mut event = variants[index % 3].clone();
        event.kind = *kind;
        variants.push(event);
    }
    variants
}

#[test]
fn hand_written_node_event_datum_is_byte_identical_to_apache_avro() {
    let codec = Codec::<NodeEvent>::new().unwrap();
    for event in node_event_variants() {
        let generic = codec.encode_generic(&event).expect("apache-avro encodes");
        assert_eq!(codec.encode(&event).unwrap(), generic, "{:?}: bytes differ", event.kind);
        assert_eq!(codec.decode(&generic).expect("hand reader decodes apache-avro bytes"), event);
        let mut datum = std::io::Cursor::new(&generic[HEADER_LEN..]);
        let value = from_avro_datum(codec.current_schema(), &mut datum, None).expect("apache-avro reads");
        assert_eq!(from_value::<NodeEvent>(&value).unwrap(), event, "apache-avro reads the hand-written bytes");
    }
}

#[test]
fn node_event_kind_order_is_the_schema_symbol_order() {
    let codec = Codec::<NodeEvent>::new().unwrap();
    let Schema::Record(record) = codec.current_schema() else { panic!("NodeEvent is a record") };
    let kind = record.fields.iter().find(|field| field.name == "kind").unwrap();
    let Schema::Enum(kind) = &kind.schema else { panic!("kind is an enum") };
    let ours: Vec<String> = NodeEventKind::ALL
        .iter()
        .map(|kind| serde_json::to_value(kind).unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kind.symbols, ours);
}

#[test]
fn damaged_node_event_datums_are_typed_errors() {
    let codec = Codec::<NodeEvent>::new().unwrap();
    let bytes = codec.encode(&load_json("node_event.v2")).unwrap();
    for cut in [HEADER_LEN, HEADER_LEN + 1, HEADER_LEN + 20, bytes.len() - 1] {
        assert!(matches!(codec.decode(&bytes[..cut]), Err(CodecError::Datum { .. })), "cut at {cut}");
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    let error = codec.decode(&trailing).unwrap_err();
    assert!(error.to_string().contains("trailing bytes"), "{error}");
    let mut bad_kind = bytes.clone();
    // event_id is 11 bytes ("node-a/1/42") after its 1-byte length; the enum index follows.
    bad_kind[HEADER_LEN + 12] = 0x7E;
    assert!(codec.decode(&bad_kind).unwrap_err().to_string().contains("NodeEventKind"));
}

/// A fuzzer's find: a record of an older version whose map block count (a few bytes) said 16 million, which
/// apache-avro reserved room for (2.7 GB) before reading a single item. Every length and count is now checked
/// against the bytes left first, and the record is refused as a bad datum.
#[test]
fn a_block_count_beyond_the_data_is_refused_before_apache_avro_allocates() {
    let fuzzed = [
        0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80,
        0x80, 0x10, 0x17, 0xd6, 0xff, 0x2b,
    ];
    let headers = crate::version_headers();
    let record: Vec<u8> = headers[usize::from(fuzzed[0]) % headers.len()].iter().chain(&fuzzed[1..]).copied().collect();
    let outcomes = [
        Codec::<NodeEvent>::new().unwrap().decode(&record).err(),
        Codec::<AuditEvent>::new().unwrap().decode(&record).err(),
        Codec::<CloudActivity>::new().unwrap().decode(&record).err(),
        Codec::<Detection>::new().unwrap().decode(&record).err(),
        Codec::<Alert>::new().unwrap().decode(&record).err(),
    ];
    let known: Vec<&CodecError> =
        outcomes.iter().flatten().filter(|e| !matches!(e, CodecError::UnknownFingerprint { .. })).collect();
    assert_eq!(known.len(), 1, "one codec knows the fingerprint: {outcomes:?}");
    assert!(matches!(known[0], CodecError::Datum { .. }), "{:?}", known[0]);
}
