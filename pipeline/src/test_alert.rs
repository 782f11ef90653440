//! `palisade test-alert`: runs the documented harmless trigger — a copy of /bin/true named
//! `palisade_alerttest_5f3c9e` — so `K8S.NODE_EICAR` proves the node path end to end.

use std::path::PathBuf;
use std::process::Command;

use palisade_detect::detectors::eicar::TEST_TRIGGER_NAME;

use crate::PipelineError;

/// Runs the trigger and returns the path it ran from (already removed).
pub fn fire() -> Result<PathBuf, PipelineError> {
    let source = ["/bin/true", "/usr/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| PipelineError::TestAlert("neither /bin/true nor /usr/bin/true exists".into()))?;
    // A fresh private directory: a predictable one under /tmp would let a local user put their binary where root
    // runs the trigger.
    let dir = crate::private_dir::create("palisade-test-alert").map_err(|e| {
        PipelineError::TestAlert(format!("a private directory under {}: {e}", std::env::temp_dir().display()))
    })?;
    let trigger = dir.join(TEST_TRIGGER_NAME);
    std::fs::copy(&source, &trigger).map_err(|e| PipelineError::TestAlert(format!("{}: {e}", trigger.display())))?;
    let status = Command::new(&trigger)
        .args(["palisade", "test", "alert", "(not", "a", "threat)"])
        .status()
        .map_err(|e| PipelineError::TestAlert(format!("running {}: {e}", trigger.display())))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        return Err(PipelineError::TestAlert(format!("{} exited with {status}", trigger.display())));
    }
    Ok(trigger)
}
