//! RBAC alert types: bindings to cluster-admin, and roles that grant high privileges.

mod detector;
#[cfg(test)]
mod tests;

pub use detector::{BINDING, ClusterAdminBinding, HighPrivilegesRole, ROLE, high_privilege_reasons};
