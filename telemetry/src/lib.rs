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

/// A further `tracing` layer beside the log output (the OTLP trace export).
pub type ExtraLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Installs the `tracing` subscriber: JSON lines when `json`, human text otherwise; `RUST_LOG` filters.
pub fn init_logging(json: bool) {
    init_logging_with(json, None);
}

/// As `init_logging`, with a further layer that filters for itself (`RUST_LOG` does not apply to it).
pub fn init_logging_with(json: bool, extra: Option<ExtraLayer>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The per-record spans are the trace export's, never log lines (nor kept by the log layer).
    let filter = filter.add_directive("palisade::trace=off".parse().expect("a valid directive"));
    // A closed stderr (a supervisor gone) must not turn a log line into a panic.
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).log_internal_errors(false);
    let fmt: ExtraLayer = if json { fmt.json().with_filter(filter).boxed() } else { fmt.with_filter(filter).boxed() };
    let layers: Vec<ExtraLayer> = std::iter::once(fmt).chain(extra).collect();
    let _ = tracing_subscriber::registry().with(layers).try_init();
}
