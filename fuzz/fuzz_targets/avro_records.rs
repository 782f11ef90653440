//! Topic records as every stage decodes them: Avro single-object encoding with each shipped schema version's
//! fingerprint, read by the hand-written datum readers (current versions) or apache-avro (older ones).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use palisade_schemas::{Alert, AuditEvent, CloudActivity, Codec, Detection, NodeEvent};

struct Codecs {
    node: Codec<NodeEvent>,
    audit: Codec<AuditEvent>,
    cloud: Codec<CloudActivity>,
    detection: Codec<Detection>,
    alert: Codec<Alert>,
    /// The 10-byte headers (magic and fingerprint) of every shipped version.
    headers: Vec<Vec<u8>>,
}

static CODECS: LazyLock<Codecs> = LazyLock::new(|| {
    let node = Codec::<NodeEvent>::new().unwrap();
    let audit = Codec::<AuditEvent>::new().unwrap();
    let cloud = Codec::<CloudActivity>::new().unwrap();
    let detection = Codec::<Detection>::new().unwrap();
    let alert = Codec::<Alert>::new().unwrap();
    let headers = palisade_schemas::version_headers();
    Codecs { node, audit, cloud, detection, alert, headers }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let codecs = &*CODECS;
    let header = &codecs.headers[usize::from(selector) % codecs.headers.len()];
    let record: Vec<u8> = header.iter().chain(rest).copied().collect();
    for bytes in [&record[..], data] {
        let _ = codecs.node.decode(bytes);
        let _ = codecs.audit.decode(bytes);
        let _ = codecs.cloud.decode(bytes);
        let _ = codecs.detection.decode(bytes);
        let _ = codecs.alert.decode(bytes);
    }
});
