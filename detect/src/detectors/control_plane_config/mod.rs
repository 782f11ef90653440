//! Changes to configuration the control plane runs on: admission webhooks and CoreDNS.

mod detector;
#[cfg(test)]
mod tests;

pub use detector::{ADMISSION, AdmissionController, COREDNS, CoreDnsModification};
