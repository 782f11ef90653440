//! Detection: the alert-type catalogue as data, the detector traits, the registry of implemented detectors and
//! the engine that runs them over events. Pure: no Kafka, HTTP or Elasticsearch; the pipeline crate feeds it
//! decoded events and publishes what it returns.

pub mod baseline;
pub mod catalogue;
pub mod config;
pub mod detectors;
pub mod docs;
pub mod engine;
pub mod ip_list;
pub mod keyed;
pub mod lists;
pub mod registry;
pub mod texts;
pub mod unit;
pub mod windowed;

pub use catalogue::lookup;
pub use config::{DetectConfig, Exception, RuleConfig};
pub use engine::Engine;
pub use unit::{AlertTypeMeta, DetectionKind, Event, Finding, Severity, Source, StatelessDetector, WindowedDetector};
pub use windowed::WindowConfig;
