mod config;
mod writer;

pub use config::OpenSearchConfig;
pub use writer::{BulkOutcome, OpenSearchError, OpenSearchWriter};
