//! `palisade audit`: receives kube-apiserver audit batches on a TLS webhook, maps each event to an
//! `AuditEvent` and publishes it to `palisade.audit.events`, answering the API server only after the bus
//! acknowledged the whole batch.

pub mod webhook;

pub use webhook::{AuditConfig, AuditError, WebhookServer};
