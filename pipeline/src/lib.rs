//! The stages wired to the bus. Each stage reads one or more topics, does its job through a pure library
//! (detect, enrich, sink) and acknowledges a message only after what it produced from it was acknowledged.
//! `run` puts every stage in one process on the in-process bus; `serve` runs one stage against Kafka;
//! `scan` runs detection offline over recorded events.

pub mod config;
mod error;
pub mod otlp;
mod private_dir;
pub mod replay;
pub mod run;
pub mod scan;
pub mod serve;
pub mod stages;
pub mod test_alert;

pub use config::{AlertsFormat, PalisadeConfig, SinkConfig};
pub use error::PipelineError;
