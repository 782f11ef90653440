//! Trace context across the stages: one span per stage per record, whose parent is the record's W3C `traceparent`
//! header, and the header written on what the stage publishes for it, so one alert's trace runs from the
//! collector or the webhook to the sink. Off (no span, no header) unless OTLP export was set up with `enable`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of the record spans: the OTLP layer takes this target only, whatever `RUST_LOG` says.
pub const TARGET: &str = "palisade::trace";
/// The W3C trace-context header, on Kafka records as on HTTP requests.
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns record spans on; called once the OTLP layer is installed.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A record's span in one stage and the header that carries it on. Dropping it ends the span.
#[derive(Debug)]
pub struct RecordSpan {
    pub span: tracing::Span,
    traceparent: Option<String>,
}

struct Headers<'a>(&'a [(String, Vec<u8>)]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // The last one wins, as a producer that adds a header to a copied record expects.
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

impl RecordSpan {
    /// No span and no header (tracing off, or a record with no single cause).
    pub fn none() -> Self {
        Self { span: tracing::Span::none(), traceparent: None }
    }

    /// The span of one record in `stage`, child of the trace `parent` (a consumed record's headers) names, or a
    /// new trace's root when it names none (or a malformed one). Whether it is kept follows the sampler: the root's
    /// decision, carried in the header's flags, holds for every stage after it.
    pub fn start(stage: &'static str, parent: &[(String, Vec<u8>)]) -> Self {
        if !enabled() {
            return Self::none();
        }
        let span = tracing::info_span!(target: TARGET, "record", otel.name = stage, palisade.stage = stage,
            palisade.alert_type = tracing::field::Empty);
        let propagator = TraceContextPropagator::new();
        let _ = span.set_parent(propagator.extract(&Headers(parent)));
        let mut carrier = HashMap::new();
        propagator.inject_context(&span.context(), &mut carrier);
        Self { span, traceparent: carrier.remove(TRACEPARENT) }
    }

    /// The header to put on what the stage publishes for this record, if tracing is on.
    pub fn header(&self) -> Option<(&'static str, &[u8])> {
        self.traceparent.as_deref().map(|value| (TRACEPARENT, value.as_bytes()))
    }

    /// Names the alert type on the span (detections and alerts).
    pub fn alert_type(&self, alert_type: &str) {
        self.span.record("palisade.alert_type", alert_type);
    }
}
