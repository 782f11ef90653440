//! Detection: the alert-type catalogue as data, the detector traits, the registry of implemented detectors and
//! the engine that runs them over events. Pure: no Kafka, HTTP or Elasticsearch; the pipeline crate feeds it
//! decoded events and publishes what it returns.

pub mod baseline;
pub mod catalogue;
pub mod config;
pub mod detectors;
pub mod engine;
pub mod ip_list;
pub mod lists;
pub mod meta;
pub mod registry;
pub mod texts;
pub mod windowed;

pub use config::{DetectConfig, Exception, RuleConfig};
pub use engine::{Engine, Event, Finding, StatelessDetector};
pub use meta::{AlertTypeMeta, DetectionKind, Severity, Source, lookup};
pub use windowed::{WindowConfig, WindowedDetector};
