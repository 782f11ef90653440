//! `palisade run` whose sink cannot write its alerts file (`/dev/full` refuses every write): the test alert makes
//! the sink stage fail, and the process ends with that error instead of running on without a sink, looking alive.
//! A file of its own: one `palisade run` with eBPF collection per test binary.

mod common;

use std::process::Command;
use std::time::Duration;

#[test]
fn a_stage_failing_while_the_others_run_ends_palisade_run_with_an_error() {
    let (mut run, ready) = common::start_embedded_run(
        std::path::Path::new("/dev/full"),
        &[("PALISADE__METRICS_LISTEN_ADDR", "127.0.0.1:19465")],
    );
    assert!(ready.contains("node collection on"), "{ready}");
    assert!(Command::new(env!("CARGO_BIN_EXE_palisade")).arg("test-alert").status().unwrap().success());
    let status = common::wait_for_exit(&mut run.0, Duration::from_secs(60))
        .expect("palisade run ends once its sink failed, not runs on");
    // 2: the command failed with an error (a panic would be 101, a signal no code).
    assert_eq!(status.code(), Some(2), "{status}");
}
