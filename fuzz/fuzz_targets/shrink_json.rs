//! The size bound for oversized events: any JSON, any bound, gives valid JSON within the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_schemas::bounds::shrink_json;

fuzz_target!(|data: &[u8]| {
    let Some((&bound, rest)) = data.split_first() else { return };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
    // Bounds from 1 KiB: below that the fallback's own marker may not fit.
    let max_bytes = 1024 + usize::from(bound) * 64;
    let before = value.to_string();
    match shrink_json(&mut value, max_bytes) {
        None => assert_eq!(value.to_string(), before),
        Some(original) => {
            assert_eq!(original, before.len());
            let after = value.to_string();
            assert!(after.len() <= max_bytes, "{} > {max_bytes}", after.len());
            serde_json::from_str::<serde_json::Value>(&after).unwrap();
        }
    }
});
