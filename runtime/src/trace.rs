//! Trace context across the stages: one span per stage per record, whose parent is the record's W3C `traceparent`
//! header, and the header written on what the stage publishes for it, so one alert's trace runs from the
//! collector or the webhook to the sink. Off (no span, no header) unless OTLP export was set up with `enable`.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
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

/// A `traceparent` is exactly this long (version 00: `00-<32 hex>-<16 hex>-<2 hex>`).
const TRACEPARENT_LEN: usize = 55;

/// The `traceparent` of a record's headers (the last one), if it has the one length version 00 allows; nothing
/// else is read (no `tracestate`: Palisade writes none, and its size would be the producer's to choose).
fn traceparent(headers: &[(String, Vec<u8>)]) -> Option<&str> {
    let (_, value) = headers.iter().rev().find(|(name, _)| name == TRACEPARENT)?;
    std::str::from_utf8(value).ok().filter(|value| value.len() == TRACEPARENT_LEN)
}

struct Headers<'a>(&'a [(String, Vec<u8>)]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACEPARENT { traceparent(self.0) } else { None }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl RecordSpan {
    /// No span and no header (tracing off, or a record with no single cause).
    pub fn none() -> Self {
        Self { span: tracing::Span::none(), traceparent: None }
    }

    /// The span of one record in `stage`, child of the trace `parent` (a consumed record's headers) names, or a
    /// new trace's root when it names none (or a malformed one). Whether it is kept follows the sampler: the root's
    /// decision, carried in the header's flags, holds for every stage after it. A parent that was not kept is
    /// passed on as it is, with no span made for it here (99 % of records at the default ratio).
    pub fn start(stage: &'static str, parent: &[(String, Vec<u8>)]) -> Self {
        if !enabled() {
            return Self::none();
        }
        let parent_context = TraceContextPropagator::new().extract(&Headers(parent));
        let remote = parent_context.span().span_context().clone();
        if remote.is_valid() && !remote.is_sampled() {
            return Self { span: tracing::Span::none(), traceparent: traceparent(parent).map(str::to_owned) };
        }
        let span = tracing::info_span!(target: TARGET, "record", otel.name = stage, palisade.stage = stage,
            palisade.alert_type = tracing::field::Empty);
        let _ = span.set_parent(parent_context);
        let context = span.context();
        let own = context.span().span_context().clone();
        let traceparent = own
            .is_valid()
            .then(|| format!("00-{}-{}-{:02x}", own.trace_id(), own.span_id(), own.trace_flags().to_u8() & 0x01));
        Self { span, traceparent }
    }

    /// A trace that arrived from outside Palisade (a record of a provider's topic) is not continued: its sampling
    /// flag is not Palisade's to follow. The span is a new trace's root, as at the webhook.
    pub fn start_root(stage: &'static str) -> Self {
        Self::start(stage, &[])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec())).collect()
    }

    const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn only_a_traceparent_of_the_one_valid_length_is_read() {
        assert_eq!(traceparent(&headers(&[("traceparent", GOOD)])), Some(GOOD));
        assert_eq!(traceparent(&headers(&[("traceparent", "x"), ("traceparent", GOOD)])), Some(GOOD), "the last");
        let long = format!("{GOOD}{}", "-".repeat(1 << 20));
        assert_eq!(traceparent(&headers(&[("traceparent", &long)])), None, "a megabyte of dashes is not parsed");
        assert_eq!(traceparent(&headers(&[("TraceParent", GOOD)])), None, "Palisade writes it lower-case");
        let state = "a=b,".repeat(1 << 18);
        let with_state = headers(&[("traceparent", GOOD), ("tracestate", &state)]);
        assert_eq!(Headers(&with_state).get("tracestate"), None, "no tracestate, whatever its size");
    }

    #[test]
    fn with_tracing_off_nothing_is_made_or_written() {
        let record = RecordSpan::start("detect", &headers(&[("traceparent", GOOD)]));
        assert!(record.header().is_none());
        assert!(record.span.is_none());
    }
}
