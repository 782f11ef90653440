//! Telemetry as typed events: one struct per thing that happens, which logs once and updates its metrics, one
//! file per component. Metric names: `palisade_<component>_<what>_<unit or total>`, labels in snake_case. A leaf:
//! no Kafka, no HTTP, so every crate can report what it does without depending on the runtime.

pub mod bus;
pub mod collect;
pub mod component;
pub mod detect;
pub mod enrich;
pub mod health;
pub mod sink;

pub use bus::*;
pub use collect::*;
pub use component::*;
pub use detect::*;
pub use enrich::*;
pub use sink::*;

/// Installs the `tracing` subscriber: JSON lines when `json`, human text otherwise; `RUST_LOG` filters.
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A closed stderr (a supervisor gone) must not turn a log line into a panic.
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
