//! CloudTrail and Azure activity log JSON as the cloud tailer and `scan --cloud` read it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_schemas::CloudActivity;

fuzz_target!(|data: &[u8]| {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = CloudActivity::from_cloud_json(&document);
    let _ = CloudActivity::from_cloud_record(&document);
});
