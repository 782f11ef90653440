//! Alert outputs. The only crate that talks to Elasticsearch/OpenSearch: ECS documents written with `_bulk`,
//! the alert id as `_id` so a retry overwrites instead of duplicating, an index template shipped with the
//! product, and time-based indices. Also the JSON-lines alerts file, the one-line human rendering and the OCSF
//! Detection Finding form of an alert.

pub mod attack;
pub mod ecs;
pub mod file;
mod http;
pub mod ocsf;
pub mod opensearch;
pub mod webhook;

pub use opensearch::{BulkOutcome, OpenSearchConfig, OpenSearchError, OpenSearchWriter};
pub use webhook::{WebhookConfig, WebhookError, WebhookWriter};
