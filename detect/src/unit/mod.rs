//! What a detector unit is, and nothing else: the metadata every alert type declares (`meta`), the events units
//! read and what they report (`event`), and the two detector traits (`traits`). A leaf: it imports no other
//! module of this crate, so the engine, the registry and every unit can build on it without a cycle.

pub mod event;
pub mod meta;
pub mod traits;

pub use event::{Event, Finding, PodContext};
pub use meta::{AlertTypeMeta, DetectionKind, Input, Maturity, REQUEST_RESPONSE_ON_OBJECTS, Severity, Source};
pub use traits::{KeyedChanges, LearningState, StateKey, StatelessDetector, WindowedDetector};
