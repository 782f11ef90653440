//! The sink stage: enriched alerts in; the alerts topic, the search index, the webhook, the alerts file and the
//! terminal out. The alerts topic (with the file and the terminal), the search index and the webhook are separate
//! loops, each with its own consumer group (`sink`, `sink-index`, `sink-webhook`), so none waits for another: the
//! topic is not held up by a slow or absent index, and each commits its offsets only after its output took them.
//! Within a loop a batch is acknowledged only after its outputs took it; a document the index refuses for its
//! content goes to the dead-letter topic with the reason, and the rest of its batch is still indexed; so does a
//! batch the webhook refuses.

use std::io::Write as _;
use std::time::Duration;

use palisade_runtime::bus::{Header, Outgoing};
use palisade_runtime::trace::RecordSpan;
use palisade_runtime::{Bus, Delivery, Shutdown, Subscription, TopicsConfig};
use palisade_schemas::{Alert, Codec};
use palisade_sink::file::{AlertsFile, human_line};
use palisade_sink::webhook::Delivered;
use palisade_sink::{OpenSearchWriter, WebhookWriter};
use palisade_telemetry::{AlertsWritten, ComponentStarted, ComponentStopped, MessageProcessed, OutputRetried};

use super::{DeadLetters, dead_letter_until_acked, next_delivery, now_ms, publish_until_acked};
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

/// Consumer groups of the index and webhook loops when they run beside the topic loop.
const INDEX_GROUP: &str = "sink-index";
const WEBHOOK_GROUP: &str = "sink-webhook";

/// The sink's loops, each with its subscription and the outputs it writes.
pub struct SinkLoops(Vec<(Subscription, Outputs)>);

/// Subscribes the sink's loops: one for the alerts topic, file and terminal, one for the search index and one for
/// the webhook (fewer when fewer kinds of output are configured).
pub fn subscribe(bus: &Bus, topics: &TopicsConfig, outputs: Outputs) -> Result<SinkLoops, PipelineError> {
    let (main, index, webhook) = outputs.split();
    let mut loops = vec![(bus.subscribe(&[&topics.enriched], STAGE)?, main)];
    if let Some(index) = index {
        loops.push((bus.subscribe(&[&topics.enriched], INDEX_GROUP)?, index));
    }
    if let Some(webhook) = webhook {
        loops.push((bus.subscribe(&[&topics.enriched], WEBHOOK_GROUP)?, webhook));
    }
    Ok(SinkLoops(loops))
}

/// The outputs, built (and checked: index health, template, file) before the stage starts.
pub struct Outputs {
    alerts_topic: Option<AlertsFormat>,
    /// The OCSF topic, written beside the alerts topic.
    ocsf_topic: Option<String>,
    opensearch: Option<OpenSearchWriter>,
    webhook: Option<WebhookWriter>,
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
        let webhook = config.webhook.as_ref().map(WebhookWriter::new).transpose()?;
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
            webhook,
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

    /// An output by itself, for a loop of its own.
    fn alone(opensearch: Option<OpenSearchWriter>, webhook: Option<WebhookWriter>) -> Self {
        Self {
            alerts_topic: None,
            ocsf_topic: None,
            opensearch,
            webhook,
            file: None,
            print: false,
            transactional_id: None,
            dead_letters_undecodable: false,
        }
    }

    /// The index and the webhook as outputs of their own loops, when there are other outputs beside them.
    fn split(mut self) -> (Self, Option<Self>, Option<Self>) {
        let others = self.alerts_topic.is_some() || self.file.is_some() || self.print;
        let webhook = match (&self.webhook, others || self.opensearch.is_some()) {
            (Some(_), true) => Some(Self::alone(None, self.webhook.take())),
            _ => None,
        };
        if !others || self.opensearch.is_none() {
            return (self, None, webhook);
        }
        let index = Self::alone(self.opensearch.take(), None);
        (self, Some(index), webhook)
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

/// Waits for an output that retries until it is done (each retry is counted and marks the sink failing as it
/// happens). At shutdown it gets a grace period; then `None`: the batch is left unacknowledged (Kafka delivers it
/// again) rather than holding the process.
async fn until_done<T>(
    work: impl std::future::Future<Output = T>,
    output: &'static str,
    shutdown: &Shutdown,
) -> Option<T> {
    let grace = async {
        shutdown.wait().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await
    };
    tokio::select! {
        done = work => {
            palisade_telemetry::health::succeeded(STAGE);
            Some(done)
        }
        _ = grace => {
            tracing::warn!(output, "output unreachable at shutdown; batch left unacknowledged");
            None
        }
    }
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
    let (batch_max, batch_wait) = match (&outputs.opensearch, &outputs.webhook) {
        (Some(w), _) => (w.config().batch_max_alerts, Duration::from_millis(w.config().batch_max_wait_ms)),
        (None, Some(w)) => (w.config().batch_max_alerts, Duration::from_millis(w.config().batch_max_wait_ms)),
        (None, None) => (DEFAULT_BATCH, TOPIC_BATCH_WAIT),
    };
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
        // Each alert's span here, in the order of `alerts`, and the header that carries it on to the alerts topic.
        let mut spans: Vec<RecordSpan> = Vec::with_capacity(batch.len());
        // Acknowledged with the rest of the batch, never before: acknowledging a later offset first would commit
        // past the good records before it that are not written yet.
        let mut undecodable: Vec<Delivery> = Vec::new();
        for delivery in batch {
            match codec.decode(&delivery.message.payload) {
                Ok(alert) => {
                    let record = RecordSpan::start(STAGE, &delivery.message.headers);
                    record.alert_type(&alert.alert_type);
                    spans.push(record);
                    alerts.push((delivery, alert));
                }
                Err(error) => {
                    let reason = error.to_string();
                    if outputs.dead_letters_undecodable
                        && !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, &delivery, &reason, &shutdown)
                            .await
                    {
                        break 'stage;
                    }
                    undecodable.push(delivery);
                }
            }
        }
        let headers: Vec<Vec<Header<'_>>> = spans.iter().map(|span| span.header().into_iter().collect()).collect();
        if let (Some(format), None) = (outputs.alerts_topic, &transactions) {
            for ((_, alert), headers) in alerts.iter().zip(&headers) {
                for (topic, payload) in topic_records(&codec, format, outputs.ocsf_topic.as_deref(), &topics, alert)? {
                    let outgoing = Outgoing { topic, key: Some(alert.id.as_bytes()), payload: &payload, headers };
                    let dead_letters = DeadLetters { topic: &topics.dead_letter, stage: STAGE };
                    if !publish_until_acked(&bus, outgoing, dead_letters, &shutdown).await {
                        break 'stage;
                    }
                }
            }
            AlertsWritten { output: "topic", outcome: "written", count: alerts.len() as u64 }.emit();
        }
        if let Some(writer) = &outputs.opensearch {
            let only_alerts: Vec<Alert> = alerts.iter().map(|(_, alert)| alert.clone()).collect();
            let write = writer.write(&only_alerts);
            let Some(outcome) = until_done(write, "opensearch", &shutdown).await else { break 'stage };
            let outcome = outcome?;
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
        if let Some(writer) = &outputs.webhook {
            let only_alerts: Vec<Alert> = alerts.iter().map(|(_, alert)| alert.clone()).collect();
            let send = writer.send(&only_alerts);
            let Some(outcome) = until_done(send, "webhook", &shutdown).await else { break 'stage };
            match outcome {
                Delivered::Accepted => {
                    AlertsWritten { output: "webhook", outcome: "delivered", count: alerts.len() as u64 }.emit();
                }
                // The endpoint refused the batch for what it holds: retrying would not help, so each alert goes to
                // the dead-letter topic with the endpoint's answer, and the stream moves on.
                Delivered::Refused(reason) => {
                    for (delivery, _) in &alerts {
                        if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, delivery, &reason, &shutdown)
                            .await
                        {
                            break 'stage;
                        }
                    }
                    AlertsWritten { output: "webhook", outcome: "refused", count: alerts.len() as u64 }.emit();
                }
            }
        }
        // Exactly once: the index took the batch (idempotent by alert id), now the alerts and the offsets of the
        // whole batch commit together. A failed transaction is aborted and the batch tried again.
        if let (Some(format), Some(transactions)) = (outputs.alerts_topic, &transactions) {
            let mut payloads: Vec<(&str, &str, Vec<u8>, &[Header<'_>])> = Vec::with_capacity(alerts.len());
            for ((delivery, alert), headers) in alerts.iter().zip(&headers) {
                for (topic, payload) in topic_records(&codec, format, outputs.ocsf_topic.as_deref(), &topics, alert)? {
                    // One record over the bound would fail every attempt of the whole transaction: it leaves the
                    // batch for the dead-letter topic instead.
                    let outgoing = Outgoing { topic, key: Some(alert.id.as_bytes()), payload: &payload, headers };
                    let bytes = palisade_runtime::kafka::outgoing_bytes(&outgoing);
                    if bytes > bus.max_message_bytes() {
                        let reason = format!(
                            "{topic} record of {bytes} bytes is over the {}-byte bound (kafka.max_message_bytes)",
                            bus.max_message_bytes()
                        );
                        if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, delivery, &reason, &shutdown)
                            .await
                        {
                            break 'stage;
                        }
                        continue;
                    }
                    payloads.push((topic, alert.id.as_str(), payload, headers));
                }
            }
            let records: Vec<Outgoing<'_>> = payloads
                .iter()
                .map(|(topic, id, payload, headers)| Outgoing { topic, key: Some(id.as_bytes()), payload, headers })
                .collect();
            let mut attempts = 0u32;
            let mut records = records;
            while let Err(error) = transactions.commit(&records, &consumed).await {
                // The broker refuses a record for its size (its topic's max.message.bytes is below
                // kafka.max_message_bytes): that never changes, so the batch's alerts are dead-lettered with the
                // reason and only the offsets are committed, instead of retrying the batch for ever.
                if let palisade_runtime::BusError::TooLarge { .. } = error {
                    let reason = format!("alerts transaction refused: {error}");
                    for (delivery, _) in &alerts {
                        if !dead_letter_until_acked(&bus, &topics.dead_letter, STAGE, delivery, &reason, &shutdown)
                            .await
                        {
                            break 'stage;
                        }
                    }
                    records.clear();
                    continue;
                }
                OutputRetried { output: "topic" }.emit();
                palisade_telemetry::health::failing(STAGE, &format!("alerts transaction failed: {error}"));
                attempts += 1;
                tracing::warn!(%error, attempts, "alerts transaction failed; retrying the batch");
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
        let mut settled: Vec<Delivery> = Vec::with_capacity(alerts.len() + undecodable.len());
        for (delivery, _) in alerts {
            MessageProcessed { stage: STAGE }.emit();
            settled.push(delivery);
        }
        settled.extend(undecodable);
        // In arrival order (offset order per partition), now that everything before each is written.
        settled.sort_by(|a, b| {
            (&a.message.topic, a.message.partition, a.message.offset).cmp(&(
                &b.message.topic,
                b.message.partition,
                b.message.offset,
            ))
        });
        // With transactions the offsets were committed in the transaction.
        if transactions.is_none() {
            for delivery in settled {
                delivery.ack()?;
            }
        }
    }
    subscription.close()?;
    Ok(())
}
