//! RBAC alert types: bindings to cluster-admin, and roles that grant high privileges.

mod detector;
#[cfg(test)]
mod tests;

pub use detector::{ClusterAdminBinding, HighPrivilegesRole, high_privilege_reasons};
