//! The collector's decoding of the kernel programs' ring-buffer records, and the cgroup path attribution.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    palisade_collect::fuzzing::ring_record(data);
    palisade_collect::cgroup::parse_cgroup_path(&String::from_utf8_lossy(data));
});
