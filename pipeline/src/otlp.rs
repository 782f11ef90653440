//! OTLP export when `[telemetry.otlp]` is set, over OTLP/HTTP (protobuf) to a collector (Jaeger, the OpenTelemetry
//! Collector, a vendor's endpoint): the record spans of `palisade_runtime::trace`, batched; and every Prometheus
//! metric of the process, read from the same registry `/metrics` serves (counters as cumulative sums, gauges as
//! gauges, histograms as their `_sum` and `_count`), sent every `metrics_interval_secs`.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing_subscriber::Layer as _;

/// `[telemetry]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP export; absent: no traces leave the process.
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
}

/// `[telemetry.otlp]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP address, e.g. `http://otel-collector:4318`; traces go to `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// The share of traces kept, decided where a trace starts (the webhook, a source, the collector) and followed
    /// by every stage after it, so a kept trace is whole.
    #[serde(default = "default_sampling_ratio")]
    pub sampling_ratio: f64,
    /// `service.name` of the exported spans; each process adds its stage as `service.instance.id`'s prefix.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Longest wait for the collector to take one batch, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How often the metrics are sent, in seconds; 0: metrics stay on Prometheus `/metrics` only.
    #[serde(default = "default_metrics_interval_secs")]
    pub metrics_interval_secs: u64,
}

const fn default_sampling_ratio() -> f64 {
    0.01
}
fn default_service_name() -> String {
    "palisade".to_owned()
}
const fn default_timeout_ms() -> u64 {
    10_000
}
const fn default_metrics_interval_secs() -> u64 {
    30
}

impl OtlpConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!("endpoint `{}` must start with http:// or https://", self.endpoint));
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(format!("sampling_ratio {} must be between 0 and 1", self.sampling_ratio));
        }
        if self.service_name.trim().is_empty() {
            return Err("service_name is empty".into());
        }
        Ok(())
    }
}

/// The installed export: flushes what is batched when shut down.
pub struct Otlp {
    provider: SdkTracerProvider,
    metrics: Option<(SdkMeterProvider, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Otlp {
    /// Sends what is still batched (up to the timeout) and stops the exporters. Call outside the async runtime.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "OTLP trace export did not finish cleanly");
        }
        if let Some((meters, stop, bridge)) = self.metrics {
            drop(stop);
            let _ = bridge.join();
            if let Err(error) = meters.shutdown() {
                tracing::warn!(%error, "OTLP metric export did not finish cleanly");
            }
        }
    }
}

/// Observes the current values of one Prometheus family (`part`: the whole family, or a histogram's `_sum` or
/// `_count`) in the process's registry.
fn observe(name: &str, part: Part, observer: &dyn opentelemetry::metrics::AsyncInstrument<f64>) {
    use prometheus::proto::MetricType;
    let Some(family) = prometheus::gather().into_iter().find(|family| family.name() == name) else { return };
    for metric in family.get_metric() {
        let attributes: Vec<KeyValue> =
            metric.get_label().iter().map(|l| KeyValue::new(l.name().to_owned(), l.value().to_owned())).collect();
        let value = match (family.get_field_type(), part) {
            (MetricType::COUNTER, _) => metric.get_counter().get_value(),
            (MetricType::GAUGE, _) => metric.get_gauge().get_value(),
            (MetricType::HISTOGRAM, Part::Sum) => metric.get_histogram().get_sample_sum(),
            (MetricType::HISTOGRAM, _) => metric.get_histogram().get_sample_count() as f64,
            (MetricType::SUMMARY, Part::Sum) => metric.get_summary().sample_sum(),
            (MetricType::SUMMARY, _) => metric.get_summary().sample_count() as f64,
            // Palisade registers none; the protobuf accessor is going away.
            (MetricType::UNTYPED, _) => continue,
        };
        observer.observe(value, &attributes);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Whole,
    Sum,
    Count,
}

/// Gives every Prometheus family an observable OTLP instrument, and each family registered later too (they are
/// registered on first use), checking every `every` until `stop` is dropped.
fn bridge_metrics(meter: opentelemetry::metrics::Meter, every: Duration, stop: std::sync::mpsc::Receiver<()>) {
    use prometheus::proto::MetricType;
    let mut bridged = std::collections::HashSet::new();
    // The instruments live as long as the bridge: their callbacks run at each export.
    let mut instruments: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    loop {
        for family in prometheus::gather() {
            let name = family.name().to_owned();
            if !bridged.insert(name.clone()) {
                continue;
            }
            let help = family.help().to_owned();
            let counter = |meter: &opentelemetry::metrics::Meter, shown: String, part: Part| {
                let name = name.clone();
                let instrument = meter
                    .f64_observable_counter(shown)
                    .with_description(help.clone())
                    .with_callback(move |observer| observe(&name, part, observer))
                    .build();
                Box::new(instrument) as Box<dyn std::any::Any + Send>
            };
            match family.get_field_type() {
                MetricType::COUNTER => instruments.push(counter(&meter, name.clone(), Part::Whole)),
                MetricType::HISTOGRAM | MetricType::SUMMARY => {
                    instruments.push(counter(&meter, format!("{name}_sum"), Part::Sum));
                    instruments.push(counter(&meter, format!("{name}_count"), Part::Count));
                }
                MetricType::UNTYPED => {}
                MetricType::GAUGE => {
                    let source = name.clone();
                    let instrument = meter
                        .f64_observable_gauge(name.clone())
                        .with_description(help)
                        .with_callback(move |observer| observe(&source, Part::Whole, observer))
                        .build();
                    instruments.push(Box::new(instrument));
                }
            }
        }
        match stop.recv_timeout(every) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// Builds the exporter and the `tracing` layer that feeds it (the record spans' target only), and turns record
/// spans on. `process` names this process in the spans' resource (`run`, `audit`, `detect`…). Call before the
/// async runtime starts: the exporter's HTTP client blocks.
pub fn install(
    config: &OtlpConfig,
    process: &str,
) -> Result<(Otlp, palisade_telemetry::ExtraLayer), crate::PipelineError> {
    config.validate().map_err(|reason| palisade_runtime::ConfigError::Value { field: "telemetry.otlp", reason })?;
    let endpoint = format!("{}/v1/traces", config.endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_millis(config.timeout_ms))
        .build()
        .map_err(|e| palisade_runtime::ConfigError::Value { field: "telemetry.otlp", reason: e.to_string() })?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.instance.id", format!("{process}@{}", host.trim())))
        .with_attribute(KeyValue::new("palisade.process", process.to_owned()))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sampling_ratio))))
        .with_resource(resource.clone())
        .build();
    let metrics = match config.metrics_interval_secs {
        0 => None,
        secs => {
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{}/v1/metrics", config.endpoint.trim_end_matches('/')))
                .with_timeout(Duration::from_millis(config.timeout_ms))
                .build()
                .map_err(|e| palisade_runtime::ConfigError::Value { field: "telemetry.otlp", reason: e.to_string() })?;
            let every = Duration::from_secs(secs);
            let reader = PeriodicReader::builder(exporter).with_interval(every).build();
            let meters = SdkMeterProvider::builder().with_reader(reader).with_resource(resource.clone()).build();
            let meter = meters.meter("palisade");
            let (stop, stopped) = std::sync::mpsc::channel();
            // Families registered later are picked up at twice the export rate, so none waits two exports.
            let bridge = std::thread::Builder::new()
                .name("otlp-metrics".into())
                .spawn(move || bridge_metrics(meter, (every / 2).max(Duration::from_millis(500)), stopped))
                .map_err(|e| palisade_runtime::ConfigError::Value { field: "telemetry.otlp", reason: e.to_string() })?;
            Some((meters, stop, bridge))
        }
    };
    let tracer = provider.tracer("palisade");
    let only_records =
        tracing_subscriber::filter::Targets::new().with_target(palisade_runtime::trace::TARGET, tracing::Level::INFO);
    // The spans are never entered: no thread, source location or busy/idle times to record.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_filter(only_records)
        .boxed();
    palisade_runtime::trace::enable();
    Ok((Otlp { provider, metrics }, layer))
}
