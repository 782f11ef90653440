//! The RFC 3339 parser (audit, CloudTrail, Azure and suppression times) and the request-URI query reader (dry
//! runs), on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_schemas::k8s_audit::{parse_rfc3339_ms, query_values};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(ms) = parse_rfc3339_ms(&text) {
        // Four-digit years only: the result stays within years 0..=9999 (and their offsets).
        assert!((-62_200_000_000_000..=253_500_000_000_000).contains(&ms), "{text:?} -> {ms}");
    }
    let _ = query_values(&text, "dryRun").count();
});
