mod config;
mod writer;

pub use config::{OpenSearchConfig, TemplatePolicy};
pub use writer::{BulkOutcome, OpenSearchError, OpenSearchWriter};
