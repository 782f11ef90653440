//! The collector's hand-written protobuf walker for the CRI runtime's ContainerStatus answers (gRPC frames).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    palisade_collect::fuzzing::cri_answer(data);
});
