//! The sink stage: enriched alerts in; the alerts topic, the search index, the alerts file and the terminal out.
//! A batch is acknowledged only after every output took it; a document the index refuses for its content goes to
//! the dead-letter topic with the reason, and the rest of its batch is still indexed.

use std::io::Write as _;
use std::time::Duration;

use palisade_runtime::bus::Outgoing;
use palisade_runtime::telemetry::{AlertsWritten, ComponentStarted, ComponentStopped, MessageProcessed, OutputRetried};
use palisade_runtime::{Bus, Delivery, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{Alert, Codec};
use palisade_sink::OpenSearchWriter;
use palisade_sink::file::{AlertsFile, human_line};

use super::{dead_letter_until_acked, next_delivery, publish_until_acked};
use crate::PipelineError;
use crate::config::{AlertsFormat, SinkConfig};

const STAGE: &str = "sink";
const DEFAULT_BATCH: usize = 500;
/// How long a stopping sink keeps retrying an unreachable search index.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn subscribe(bus: &Bus, topics: &TopicsConfig) -> Result<Subscription, PipelineError> {
    Ok(bus.subscribe(&[&topics.enriched], STAGE)?)
}

/// The outputs, built (and checked: index health, template, file) before the stage starts.
pub struct Outputs {
    alerts_topic: Option<AlertsFormat>,
    opensearch: Option<OpenSearchWriter>,
    file: Option<AlertsFile>,
    print: bool,
}

impl Outputs {
    pub async fn build(config: &SinkConfig) -> Result<Self, PipelineError> {
        let opensearch = match &config.opensearch {
            Some(opensearch) => {
                let writer = OpenSearchWriter::new(opensearch)?;
                writer.prepare().await?;
                Some(writer)
            }
            None => None,
        };
        let file = match &config.alerts_file {
            Some(path) => Some(
                AlertsFile::open(path)
                    .map_err(|source| PipelineError::AlertsFile { path: path.display().to_string(), source })?,
            ),
            None => None,
        };
        Ok(Self {
            alerts_topic: config.alerts_topic.then_some(config.alerts_format),
            opensearch,
            file,
            print: config.print_alerts,
        })
    }
}

pub async fn run(
    bus: Bus,
    mut subscription: Subscription,
    topics: TopicsConfig,
    mut outputs: Outputs,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let codec = Codec::<Alert>::new()?;
    let (batch_max, batch_wait) = outputs.opensearch.as_ref().map_or((DEFAULT_BATCH, Duration::from_millis(50)), |w| {
        (w.config().batch_max_alerts, Duration::from_millis(w.config().batch_max_wait_ms))
    });
    ComponentStarted { component: STAGE }.emit();
    'stage: while let Some(first) = next_delivery(&mut subscription, &shutdown).await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + batch_wait;
        while batch.len() < batch_max {
            match tokio::time::timeout_at(deadline, subscription.next()).await {
                Ok(Some(Ok(delivery))) => batch.push(delivery),
                _ => break,
            }
        }
        let mut alerts: Vec<(Delivery, Alert)> = Vec::with_capacity(batch.len());
        for delivery in batch {
            match codec.decode(&delivery.message.payload) {
                Ok(alert) => alerts.push((delivery, alert)),
                Err(error) => {
                    let reason = error.to_string();
                    if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, &delivery, &reason, &shutdown).await {
                        break 'stage;
                    }
                    delivery.ack()?;
                }
            }
        }
        if let Some(format) = outputs.alerts_topic {
            for (_, alert) in &alerts {
                let payload = match format {
                    AlertsFormat::Avro => codec.encode(alert)?,
                    AlertsFormat::Json => serde_json::to_vec(alert).expect("alerts serialize"),
                };
                let outgoing =
                    Outgoing { topic: &topics.alerts, key: Some(alert.id.as_bytes()), payload: &payload, headers: &[] };
                if !publish_until_acked(&bus, outgoing, &shutdown).await {
                    break 'stage;
                }
            }
            AlertsWritten { output: "topic", outcome: "written", count: alerts.len() as u64 }.emit();
        }
        if let Some(writer) = &outputs.opensearch {
            let only_alerts: Vec<Alert> = alerts.iter().map(|(_, alert)| alert.clone()).collect();
            let retries_before = writer.retries.load(std::sync::atomic::Ordering::Relaxed);
            // The writer retries until the index answers; at shutdown it gets a grace period, then the batch is
            // left unacknowledged (Kafka delivers it again) rather than holding the process.
            let outcome = tokio::select! {
                outcome = writer.write(&only_alerts) => outcome?,
                _ = async { shutdown.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                    tracing::warn!(alerts = only_alerts.len(), "search index unreachable at shutdown; batch left unacknowledged");
                    break 'stage;
                }
            };
            OutputRetried {
                output: "opensearch",
                count: writer.retries.load(std::sync::atomic::Ordering::Relaxed) - retries_before,
            }
            .emit();
            AlertsWritten { output: "opensearch", outcome: "indexed", count: outcome.indexed as u64 }.emit();
            for (id, reason) in &outcome.rejected {
                let Some((delivery, _)) = alerts.iter().find(|(_, alert)| &alert.id == id) else {
                    continue;
                };
                let reason = format!("search index rejected the alert document: {reason}");
                if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, delivery, &reason, &shutdown).await {
                    break 'stage;
                }
            }
            AlertsWritten { output: "opensearch", outcome: "rejected", count: outcome.rejected.len() as u64 }.emit();
        }
        for (_, alert) in &alerts {
            if let Some(file) = outputs.file.as_mut() {
                file.append(alert)
                    .map_err(|source| PipelineError::AlertsFile { path: file.path().display().to_string(), source })?;
            }
            if outputs.print {
                // A closed stdout (`| head`) must not stop the sink; the other outputs still count.
                let _ = writeln!(std::io::stdout().lock(), "{}", human_line(alert));
            }
        }
        for (delivery, _) in alerts {
            MessageProcessed { stage: STAGE }.emit();
            delivery.ack()?;
        }
    }
    subscription.close()?;
    ComponentStopped { component: STAGE }.emit();
    Ok(())
}
