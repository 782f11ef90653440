//! The node `window` detectors: several events of one key (a container, or a host shell session) inside a window
//! of event time. K8S.NODE_ReconnaissanceArtifactsBurst, K8S.NODE_LinuxBackdoorArtifact, and the windowed half of
//! K8S.NODE_DownloadAndRunCombo (a pipe from a network client into a process that runs what it reads).

pub mod detector;
pub mod pipes;

pub use detector::{BACKDOOR, BackdoorArtifact, RECON, ReconBurst};
pub use pipes::PipeToShell;

#[cfg(test)]
mod tests;
