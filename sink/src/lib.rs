//! Alert outputs. The only crate that talks to Elasticsearch/OpenSearch: ECS documents written with `_bulk`,
//! the alert id as `_id` so a retry overwrites instead of duplicating, an index template shipped with the
//! product, and time-based indices. Also the JSON-lines alerts file and the one-line human rendering.

pub mod ecs;
pub mod file;
pub mod opensearch;

pub use opensearch::{BulkOutcome, OpenSearchConfig, OpenSearchError, OpenSearchWriter};
