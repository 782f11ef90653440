mod config;
mod server;
mod tls;
#[cfg(test)]
mod tests;

pub use config::AuditConfig;
pub use server::{AuditError, WEBHOOK_PATH, WebhookServer};
