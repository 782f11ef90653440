//! The sink stage: enriched alerts in; the alerts topic, the search index, the alerts file and the terminal out.
//! The alerts topic (with the file and the terminal) and the search index are two loops, each with its own
//! consumer group (`sink` and `sink-index`), so neither waits for the other: the topic is not held up by a slow or
//! absent index, and the index commits its offsets only after its bulk is acknowledged. Within a loop a batch is
//! acknowledged only after its outputs took it; a document the index refuses for its content goes to the
//! dead-letter topic with the reason, and the rest of its batch is still indexed.

use std::io::Write as _;
use std::time::Duration;

use palisade_runtime::bus::Outgoing;
use palisade_runtime::telemetry::{AlertsWritten, ComponentStarted, ComponentStopped, MessageProcessed, OutputRetried};
use palisade_runtime::{Bus, Delivery, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{Alert, Codec};
use palisade_sink::OpenSearchWriter;
use palisade_sink::file::{AlertsFile, human_line};

use super::{dead_letter_until_acked, next_delivery, now_ms, publish_until_acked};
use crate::PipelineError;
use crate::config::{AlertsFormat, SinkConfig};

const STAGE: &str = "sink";
const DEFAULT_BATCH: usize = 500;
/// How long the topic loop waits for more alerts before it commits a transaction (each batch is one).
const TOPIC_BATCH_WAIT: Duration = Duration::from_millis(20);
/// How long a stopping sink keeps retrying an unreachable search index.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often daily indices past their retention are looked for.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Consumer group of the index loop when it runs beside the topic loop.
const INDEX_GROUP: &str = "sink-index";

/// The sink's loops, each with its subscription and the outputs it writes.
pub struct SinkLoops(Vec<(Subscription, Outputs)>);

/// Subscribes the sink's loops: one for the alerts topic, file and terminal, one for the search index (one loop
/// when only one kind of output is configured).
pub fn subscribe(bus: &Bus, topics: &TopicsConfig, outputs: Outputs) -> Result<SinkLoops, PipelineError> {
    let (main, index) = outputs.split();
    let mut loops = vec![(bus.subscribe(&[&topics.enriched], STAGE)?, main)];
    if let Some(index) = index {
        loops.push((bus.subscribe(&[&topics.enriched], INDEX_GROUP)?, index));
    }
    Ok(SinkLoops(loops))
}

/// The outputs, built (and checked: index health, template, file) before the stage starts.
pub struct Outputs {
    alerts_topic: Option<AlertsFormat>,
    /// The OCSF topic, written beside the alerts topic.
    ocsf_topic: Option<String>,
    opensearch: Option<OpenSearchWriter>,
    file: Option<AlertsFile>,
    print: bool,
    /// The alerts topic's `transactional.id`, when it is written exactly once.
    transactional_id: Option<String>,
    /// Whether this loop dead-letters inputs that do not decode (only one loop does, so each goes there once).
    dead_letters_undecodable: bool,
}

impl Outputs {
    pub async fn build(config: &SinkConfig) -> Result<Self, PipelineError> {
        let opensearch = match &config.opensearch {
            Some(opensearch) => {
                let writer = OpenSearchWriter::new(opensearch)?;
                writer.prepare().await?;
                if opensearch.retention_days > 0 {
                    tokio::spawn(retention(OpenSearchWriter::new(opensearch)?));
                }
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
            ocsf_topic: config.alerts_topic.then(|| config.ocsf_topic.clone()).flatten(),
            opensearch,
            file,
            print: config.print_alerts,
            transactional_id: config.exactly_once.then(|| {
                config.transactional_id.clone().unwrap_or_else(|| {
                    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                    format!("palisade-sink-{}", host.trim())
                })
            }),
            dead_letters_undecodable: true,
        })
    }

    /// The index as an output of its own, when there are other outputs beside it.
    fn split(mut self) -> (Self, Option<Self>) {
        let others = self.alerts_topic.is_some() || self.file.is_some() || self.print;
        if !others || self.opensearch.is_none() {
            return (self, None);
        }
        let index = Self {
            alerts_topic: None,
            ocsf_topic: None,
            opensearch: self.opensearch.take(),
            file: None,
            print: false,
            transactional_id: None,
            dead_letters_undecodable: false,
        };
        (self, Some(index))
    }
}

/// Deletes daily indices past their retention: now, then every hour, for as long as the process runs. A failure
/// is logged and tried again at the next hour; it never stops the sink.
async fn retention(writer: OpenSearchWriter) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    loop {
        every.tick().await;
        if let Err(error) = writer.apply_retention(now_ms()).await {
            tracing::warn!(%error, "index retention failed; trying again in an hour");
        }
    }
}

/// Runs every loop until shutdown; the first error stops the stage.
pub async fn run(bus: Bus, loops: SinkLoops, topics: TopicsConfig, shutdown: Shutdown) -> Result<(), PipelineError> {
    ComponentStarted { component: STAGE }.emit();
    let running = loops
        .0
        .into_iter()
        .map(|(subscription, outputs)| run_loop(bus.clone(), subscription, topics.clone(), outputs, shutdown.clone()));
    let result = futures::future::try_join_all(running).await.map(|_| ());
    ComponentStopped { component: STAGE }.emit();
    result
}

/// The records one alert makes on the topics: the alerts topic in its format, and the OCSF topic when set.
fn topic_records<'a>(
    codec: &Codec<Alert>,
    format: AlertsFormat,
    ocsf_topic: Option<&'a str>,
    topics: &'a TopicsConfig,
    alert: &Alert,
) -> Result<Vec<(&'a str, Vec<u8>)>, PipelineError> {
    let payload = match format {
        AlertsFormat::Avro => codec.encode(alert)?,
        AlertsFormat::Json => serde_json::to_vec(alert).expect("alerts serialize"),
    };
    let mut records = vec![(topics.alerts.as_str(), payload)];
    if let Some(topic) = ocsf_topic {
        let finding = palisade_sink::ocsf::detection_finding(alert);
        records.push((topic, serde_json::to_vec(&finding).expect("findings serialize")));
    }
    Ok(records)
}

async fn run_loop(
    bus: Bus,
    mut subscription: Subscription,
    topics: TopicsConfig,
    mut outputs: Outputs,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let codec = Codec::<Alert>::new()?;
    let (batch_max, batch_wait) = outputs.opensearch.as_ref().map_or((DEFAULT_BATCH, TOPIC_BATCH_WAIT), |w| {
        (w.config().batch_max_alerts, Duration::from_millis(w.config().batch_max_wait_ms))
    });
    let transactions = match (&outputs.transactional_id, outputs.alerts_topic) {
        (Some(id), Some(_)) => subscription.transactional_output(&bus, id).await?,
        _ => None,
    };
    'stage: while let Some(first) = next_delivery(&mut subscription, &shutdown).await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + batch_wait;
        while batch.len() < batch_max {
            match tokio::time::timeout_at(deadline, subscription.next()).await {
                Ok(Some(Ok(delivery))) => batch.push(delivery),
                _ => break,
            }
        }
        // Every input of the batch, for the offsets a transaction commits.
        let consumed: Vec<(String, i32, i64)> =
            batch.iter().map(|d| (d.message.topic.clone(), d.message.partition, d.message.offset)).collect();
        let mut alerts: Vec<(Delivery, Alert)> = Vec::with_capacity(batch.len());
        for delivery in batch {
            match codec.decode(&delivery.message.payload) {
                Ok(alert) => alerts.push((delivery, alert)),
                Err(error) => {
                    let reason = error.to_string();
                    if outputs.dead_letters_undecodable
                        && !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, &delivery, &reason, &shutdown)
                            .await
                    {
                        break 'stage;
                    }
                    if transactions.is_none() {
                        delivery.ack()?;
                    }
                }
            }
        }
        if let (Some(format), None) = (outputs.alerts_topic, &transactions) {
            for (_, alert) in &alerts {
                for (topic, payload) in topic_records(&codec, format, outputs.ocsf_topic.as_deref(), &topics, alert)? {
                    let outgoing = Outgoing { topic, key: Some(alert.id.as_bytes()), payload: &payload, headers: &[] };
                    if !publish_until_acked(&bus, outgoing, &shutdown).await {
                        break 'stage;
                    }
                }
            }
            AlertsWritten { output: "topic", outcome: "written", count: alerts.len() as u64 }.emit();
        }
        if let Some(writer) = &outputs.opensearch {
            let only_alerts: Vec<Alert> = alerts.iter().map(|(_, alert)| alert.clone()).collect();
            let mut retries_reported = writer.retries.load(std::sync::atomic::Ordering::Relaxed);
            let mut report_retries = || {
                let now = writer.retries.load(std::sync::atomic::Ordering::Relaxed);
                OutputRetried { output: "opensearch", count: now - retries_reported }.emit();
                retries_reported = now;
            };
            // The writer retries until the index answers (the retries are exported every second meanwhile, so an
            // outage shows while it lasts); at shutdown it gets a grace period, then the batch is left
            // unacknowledged (Kafka delivers it again) rather than holding the process.
            let write = writer.write(&only_alerts);
            tokio::pin!(write);
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            let grace = async {
                shutdown.wait().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await
            };
            tokio::pin!(grace);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut write => break outcome?,
                    _ = ticker.tick() => report_retries(),
                    _ = &mut grace => {
                        tracing::warn!(alerts = only_alerts.len(), "search index unreachable at shutdown; batch left unacknowledged");
                        break 'stage;
                    }
                }
            };
            report_retries();
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
        // Exactly once: the index took the batch (idempotent by alert id), now the alerts and the offsets of the
        // whole batch commit together. A failed transaction is aborted and the batch tried again.
        if let (Some(format), Some(transactions)) = (outputs.alerts_topic, &transactions) {
            let mut payloads: Vec<(&str, &str, Vec<u8>)> = Vec::with_capacity(alerts.len());
            for (_, alert) in &alerts {
                for (topic, payload) in topic_records(&codec, format, outputs.ocsf_topic.as_deref(), &topics, alert)? {
                    payloads.push((topic, alert.id.as_str(), payload));
                }
            }
            let records: Vec<Outgoing<'_>> = payloads
                .iter()
                .map(|(topic, id, payload)| Outgoing { topic, key: Some(id.as_bytes()), payload, headers: &[] })
                .collect();
            let mut attempts = 0u32;
            while let Err(error) = transactions.commit(&records, &consumed).await {
                attempts += 1;
                tracing::warn!(%error, attempts, "alerts transaction failed; retrying the batch");
                OutputRetried { output: "topic", count: 1 }.emit();
                if shutdown.is_triggered() && attempts > 3 {
                    break 'stage;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            AlertsWritten { output: "topic", outcome: "written", count: alerts.len() as u64 }.emit();
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
            // With transactions the offsets were committed in the transaction.
            if transactions.is_none() {
                delivery.ack()?;
            }
        }
    }
    subscription.close()?;
    Ok(())
}
