//! The records Palisade's topics carry: their Avro schemas (`avro/*.avsc`, the source of truth), the Rust
//! types that mirror them, the codec (Avro single-object encoding) every stage uses, and the mapping from
//! Kubernetes audit JSON. Knows nothing of Kafka, HTTP or Elasticsearch.

pub mod bounds;
pub mod cloud_json;
mod codec;
mod datum;
pub mod k8s_audit;
pub mod managed_audit;
mod types;

pub use cloud_json::CloudParseError;
pub use codec::{Codec, CodecError, Record, SchemaVersion, version_headers};
pub use datum::DatumError;
pub use k8s_audit::{AuditParseError, split_events};
pub use types::*;
