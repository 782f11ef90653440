//! The records Palisade's topics carry: their Avro schemas (`avro/*.avsc`, the source of truth), the Rust
//! types that mirror them, and the codec (Avro single-object encoding) every stage uses. Knows nothing of
//! Kafka, HTTP or Elasticsearch.

mod codec;
mod types;

pub use codec::{Codec, CodecError, Record, SchemaVersion};
pub use types::*;
