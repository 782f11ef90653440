//! One module per alert type or family, each with its tests.

pub mod eicar;
pub mod pod_spec;
pub mod privileged_container;
