//! The node `window` detectors: several events of one key (a container, or a host shell session) inside a window
//! of event time. K8S.NODE_ReconnaissanceArtifactsBurst and K8S.NODE_LinuxBackdoorArtifact.

pub mod detector;

pub use detector::{BACKDOOR, BackdoorArtifact, RECON, ReconBurst};

#[cfg(test)]
mod tests;
