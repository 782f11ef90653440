//! One module per alert type or family, each with its tests.

pub mod audit_object;
pub mod baselines;
pub mod control_plane_config;
pub mod delete_events;
pub mod eicar;
pub mod exposed;
pub mod kube_hunter;
pub mod malicious_image;
pub mod node_runtime;
pub mod node_windows;
pub mod pod_spec;
pub mod privileged_container;
pub mod rbac;
pub mod sensitive_mount;
pub mod ti_proxy;
