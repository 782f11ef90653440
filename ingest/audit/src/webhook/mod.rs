mod config;
mod connection;
mod server;
#[cfg(test)]
mod tests;
mod tls;

pub use config::AuditConfig;
pub use server::{AuditError, WEBHOOK_PATH, WebhookServer, check_credentials};
