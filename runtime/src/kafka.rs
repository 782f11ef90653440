//! Kafka through rdkafka: an idempotent producer (acks=all) whose sends resolve on broker acknowledgement, and
//! consumers that never store an offset by themselves (`enable.auto.offset.store=false`) — a stage stores it by
//! acknowledging the delivery, after its own output was acknowledged, and the auto-committer commits only stored
//! offsets. This is what makes the pipeline at-least-once: librdkafka discards prefetched messages on close, and
//! with the default auto-store their offsets would be committed unprocessed.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::bus::{AckToken, BusError, Delivery, Message, Outgoing};
use crate::config::{KafkaConfig, KafkaProperty};

/// Environment variables that hold the secrets when no file is configured.
pub const SASL_PASSWORD_ENV: &str = "PALISADE_KAFKA_SASL_PASSWORD";
pub const TLS_KEY_PASSWORD_ENV: &str = "PALISADE_KAFKA_TLS_KEY_PASSWORD";

/// What every client of this process is configured with besides its own role's settings: the brokers, the
/// security settings and the pass-through properties, with secrets read from their files or variables. The
/// secrets are kept to mask them in any error text; neither this nor a `ClientConfig` is ever logged.
#[derive(Clone)]
pub struct ClientSettings {
    properties: Vec<(String, String)>,
    secrets: Vec<String>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.properties.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ClientSettings").field("properties", &names).finish_non_exhaustive()
    }
}

fn read_secret_file(path: &std::path::Path, what: &str) -> Result<String, BusError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BusError::Settings(format!("cannot read {what} from {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn secret_from(file: Option<&std::path::Path>, env: &str, what: &str) -> Result<Option<String>, BusError> {
    match file {
        Some(path) => read_secret_file(path, what).map(Some),
        None => Ok(std::env::var(env).ok()),
    }
}

impl ClientSettings {
    /// Resolves `config` (reads the secret files and variables it names). `config` is validated already.
    pub fn resolve(config: &KafkaConfig) -> Result<Self, BusError> {
        let mut properties = vec![
            ("bootstrap.servers".to_owned(), config.bootstrap_servers.clone()),
            ("security.protocol".to_owned(), config.security_protocol().to_owned()),
        ];
        let mut secrets = Vec::new();
        if let Some(tls) = &config.tls {
            let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
            // Without a CA file, the system's trust store (librdkafka finds it).
            let ca = tls.ca_file.as_deref().map_or_else(|| "probe".to_owned(), path);
            properties.push(("ssl.ca.location".into(), ca));
            if let (Some(certificate), Some(key)) = (&tls.certificate_file, &tls.key_file) {
                properties.push(("ssl.certificate.location".into(), path(certificate)));
                properties.push(("ssl.key.location".into(), path(key)));
            }
            if let Some(password) =
                secret_from(tls.key_password_file.as_deref(), TLS_KEY_PASSWORD_ENV, "the TLS key password")?
            {
                secrets.push(password.clone());
                properties.push(("ssl.key.password".into(), password));
            }
            let algorithm = if tls.verify_hostname { "https" } else { "none" };
            properties.push(("ssl.endpoint.identification.algorithm".into(), algorithm.into()));
        }
        if let Some(sasl) = &config.sasl {
            let variable = sasl.password_env.as_deref().unwrap_or(SASL_PASSWORD_ENV);
            let password =
                secret_from(sasl.password_file.as_deref(), variable, "the SASL password")?.ok_or_else(|| {
                    BusError::Settings(format!("kafka.sasl needs a password: set password_file, or {variable}"))
                })?;
            secrets.push(password.clone());
            properties.push(("sasl.mechanism".into(), sasl.mechanism.name().into()));
            properties.push(("sasl.username".into(), sasl.username.clone()));
            properties.push(("sasl.password".into(), password));
        }
        for (name, value) in &config.properties {
            let value = match value {
                KafkaProperty::Text(text) => text.clone(),
                KafkaProperty::Integer(number) => number.to_string(),
                KafkaProperty::Flag(flag) => flag.to_string(),
                KafkaProperty::File { file } => {
                    let value = read_secret_file(file, &format!("kafka.properties.\"{name}\""))?;
                    secrets.push(value.clone());
                    value
                }
                KafkaProperty::Env { env } => {
                    let value = std::env::var(env).map_err(|_| {
                        BusError::Settings(format!("kafka.properties.\"{name}\" names {env}, which is not set"))
                    })?;
                    secrets.push(value.clone());
                    value
                }
            };
            properties.push((name.clone(), value));
        }
        // librdkafka trims a value's leading white space before it quotes it in an error.
        let trimmed: Vec<String> = secrets.iter().map(|secret| secret.trim().to_owned()).collect();
        secrets.extend(trimmed);
        secrets.retain(|secret| !secret.trim().is_empty());
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets.dedup();
        let settings = Self { properties, secrets };
        // librdkafka checks every name and value here, so a mistake stops the start, not the first connection.
        settings.client_config().create_native_config().map_err(|e| settings.error(&e))?;
        Ok(settings)
    }

    /// A client configuration with these settings; the caller adds its role's own.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }

    /// `text` with every secret replaced.
    pub fn masked(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "[redacted]"))
    }

    /// A client that could not be created, as an error whose text holds no secret.
    fn error(&self, error: &rdkafka::error::KafkaError) -> BusError {
        BusError::Settings(self.masked(&error.to_string()))
    }

    /// Creates a client of type `T` from `config`, its error masked.
    fn create<T: rdkafka::config::FromClientConfig>(&self, config: &ClientConfig) -> Result<T, BusError> {
        config.create().map_err(|e| self.error(&e))
    }

    /// `create` for a client with its own context.
    fn create_with<C, T>(&self, config: &ClientConfig, context: C) -> Result<T, BusError>
    where
        C: ClientContext,
        T: rdkafka::config::FromClientConfigAndContext<C>,
    {
        config.create_with_context(context).map_err(|e| self.error(&e))
    }
}

/// The producer's `message.max.bytes`: the configured record bound plus room for librdkafka's own framing, so
/// the bound the bus checks before sending is the one that decides.
fn producer_message_max_bytes(config: &KafkaConfig) -> String {
    (config.max_message_bytes + 1024).to_string()
}

/// The idempotent producer every stage publishes with (acks from all replicas, the record bound, lz4).
fn producer_config(settings: &ClientSettings, config: &KafkaConfig) -> ClientConfig {
    let mut producer = settings.client_config();
    producer
        .set("client.id", &config.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", config.producer_linger_ms.to_string())
        .set("message.timeout.ms", config.message_timeout_ms.to_string())
        .set("message.max.bytes", producer_message_max_bytes(config));
    producer
}

/// The record rdkafka sends for `outgoing`, headers included (the trace context rides in one); an empty payload
/// is sent as a null value.
fn future_record<'a>(outgoing: &Outgoing<'a>) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(outgoing.headers.len());
    for (key, value) in outgoing.headers {
        headers = headers.insert(Header { key, value: Some(*value) });
    }
    let mut record = FutureRecord::to(outgoing.topic).headers(headers);
    // An empty payload goes as a null value: on a compacted topic that is the tombstone that lets the broker drop
    // the key (an empty value would be kept as the key's last record forever). Readers see both as empty.
    if !outgoing.payload.is_empty() {
        record = record.payload(outgoing.payload);
    }
    match outgoing.key {
        Some(key) => record.key(key),
        None => record,
    }
}

/// What a record weighs against the bound: key, value and headers.
pub fn outgoing_bytes(outgoing: &Outgoing<'_>) -> usize {
    outgoing.payload.len()
        + outgoing.key.map_or(0, <[u8]>::len)
        + outgoing.headers.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>()
}

impl BusError {
    /// A send failure, with the broker's or client's size refusal made a permanent `TooLarge`.
    fn from_send(topic: &str, bytes: usize, config: &KafkaConfig, source: rdkafka::error::KafkaError) -> Self {
        match source.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
                BusError::TooLarge { topic: topic.to_owned(), bytes, limit: config.max_message_bytes }
            }
            _ => BusError::Kafka { topic: topic.to_owned(), source },
        }
    }
}

/// librdkafka's version and the features it was built with (`builtin.features`), for the start-up log.
pub fn client_version() -> (String, String) {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .and_then(|native| native.get("builtin.features"))
        .unwrap_or_else(|e| format!("unknown ({e})"));
    (version, features)
}

/// Errors librdkafka reports through its error callback while the start-up check runs.
#[derive(Default)]
struct ProbeContext {
    errors: std::sync::Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
}

impl rdkafka::client::ClientContext for ProbeContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if errors.len() < 64 {
            errors.push((error.rdkafka_error_code(), reason.to_owned()));
        }
    }
}

impl rdkafka::producer::ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// What an error the brokers or the TLS layer gave means for the settings, if retrying cannot mend it.
fn settings_refused(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<&'static str> {
    let lower = reason.to_ascii_lowercase();
    match code {
        Some(RDKafkaErrorCode::Authentication) => {
            Some("the brokers refused the SASL credentials: check kafka.sasl.username, the password and the mechanism")
        }
        Some(RDKafkaErrorCode::SSL) => Some(
            "TLS failed: check kafka.tls.ca_file (it must sign the brokers' certificates), the host name the \
             certificate names, and the client certificate for mutual TLS",
        ),
        // A broker that rejects the client certificate closes the connection after the handshake: the client
        // sees OpenSSL's alert on its first read (`SSL routines::sslv3 alert bad certificate`), reported as a
        // transport error. (Not "ssl" alone: every broker name on a TLS listener starts with `ssl://`.)
        _ if lower.contains("ssl routines") && lower.contains("alert") => Some(
            "the brokers refused the TLS connection: check kafka.tls.certificate_file and key_file (mutual TLS) \
             and that the brokers trust their CA",
        ),
        _ => None,
    }
}

/// How long after a first refusal with no success the check believes it.
const REFUSAL_CONFIRMED: Duration = Duration::from_secs(5);

/// Connects with `settings` and reads the cluster's metadata: a wrong password, an untrusted certificate or a
/// certificate the brokers refuse ends the wait with what to check, once the refusal is confirmed (seen again, or
/// nothing succeeded for `REFUSAL_CONFIRMED`); brokers that cannot be reached are tried until `timeout`, and then
/// the last error is given. librdkafka alone would retry all of these forever.
pub fn check_connection(settings: &ClientSettings, servers: &str, timeout: Duration) -> Result<(), BusError> {
    check_connection_unless(settings, servers, timeout, &|| false)
}

/// `check_connection` that gives up as soon as `stopped` says so (checked twice a second): a process shutting down
/// does not wait for brokers that do not answer.
pub fn check_connection_unless(
    settings: &ClientSettings,
    servers: &str,
    timeout: Duration,
    stopped: &dyn Fn() -> bool,
) -> Result<(), BusError> {
    use rdkafka::producer::{BaseProducer, Producer as _};
    let failed = |reason: String| BusError::Connect { servers: servers.to_owned(), reason: settings.masked(&reason) };
    let probe: BaseProducer<ProbeContext> = settings
        .client_config()
        .set("client.id", "palisade-connection-check")
        .create_with_context(ProbeContext::default())
        .map_err(|e| settings.error(&e))?;
    let deadline = std::time::Instant::now() + timeout;
    // The last error librdkafka reported: it says more than the metadata request's time-out.
    let mut reported: Option<String> = None;
    // A refusal can be a fluke (a SASL handshake cut short by a restarting broker is reported as an authentication
    // error): the check fails on a second one (a reconnect back-off later), or when nothing succeeded for
    // `REFUSAL_CONFIRMED` after the first (librdkafka may not report the same error twice).
    let mut refusals = 0;
    let mut first_refusal: Option<(std::time::Instant, String)> = None;
    loop {
        // Metadata read means connected and accepted, whatever a broker tried earlier said.
        let metadata = probe.client().fetch_metadata(None, Duration::from_millis(500));
        if metadata.is_ok() {
            return Ok(());
        }
        probe.poll(Duration::ZERO);
        let mut errors =
            std::mem::take(&mut *probe.context().errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        // rdkafka hands each error event to the context twice (once polling the queue, once handling the event).
        errors.dedup();
        // At most one refusal per attempt: two brokers refusing the same settings at once are still one attempt.
        let refusal =
            errors.iter().find_map(|(code, reason)| settings_refused(*code, reason).map(|hint| (hint, reason)));
        // Other errors (a broker unreachable, "all brokers down" after a refusal) neither confirm nor clear one.
        if let Some((hint, reason)) = refusal {
            refusals += 1;
            if refusals >= 2 {
                return Err(failed(format!("{hint} ({reason})")));
            }
            first_refusal.get_or_insert_with(|| (std::time::Instant::now(), format!("{hint} ({reason})")));
        }
        if let Some((at, refusal)) = &first_refusal
            && at.elapsed() >= REFUSAL_CONFIRMED
        {
            return Err(failed(refusal.clone()));
        }
        if let Some((_, reason)) = errors.last() {
            reported = Some(reason.clone());
        }
        if stopped() {
            return Err(failed("stopped before the brokers answered".into()));
        }
        if std::time::Instant::now() >= deadline {
            let last = reported.unwrap_or_else(|| metadata.err().map(|e| e.to_string()).unwrap_or_default());
            return Err(failed(format!("{last}; gave up after {} s", timeout.as_secs())));
        }
    }
}

/// An existing topic that must be compacted but is not (an earlier release created `palisade.cluster.state` with
/// the default delete policy, which expires an object that has not changed for the retention time; `compact,delete`
/// does too): its policy is set to `compact`, its other topic-level settings kept (`alter_configs` replaces them
/// all) and the compaction settings a new one gets added where it has none. Not being allowed to read or change
/// the configuration (ACLs) is logged, not fatal: every stage runs this, and most do not use the topic.
async fn compact_existing(admin: &AdminClient<DefaultClientContext>, topic: &str) {
    if let Err(reason) = try_compact_existing(admin, topic).await {
        tracing::error!(topic, %reason, "topic must be compacted (cleanup.policy=compact) and could not be made so");
    }
}

async fn try_compact_existing(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<(), String> {
    use rdkafka::admin::{AlterConfig, ConfigSource, ResourceSpecifier};
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let described = admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &options).await;
    let resource = match described.map_err(|e| e.to_string())?.into_iter().next() {
        Some(Ok(resource)) => resource,
        Some(Err(code)) => return Err(format!("its configuration could not be read: {code}")),
        None => return Err("its configuration could not be read".into()),
    };
    let policy = resource.get("cleanup.policy").and_then(|entry| entry.value.clone()).unwrap_or_default();
    if policy.trim() == "compact" {
        return Ok(());
    }
    let mut settings: Vec<(String, String)> = (resource.entries.iter())
        .filter(|entry| entry.source == ConfigSource::DynamicTopic && entry.name != "cleanup.policy")
        .filter_map(|entry| Some((entry.name.clone(), entry.value.clone()?)))
        .collect();
    for (name, value) in COMPACTION {
        if !settings.iter().any(|(set, _)| set == name) {
            settings.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("cleanup.policy", "compact");
    for (name, value) in &settings {
        alter = alter.set(name, value);
    }
    let altered = admin.alter_configs(&[alter], &options).await.map_err(|e| e.to_string())?;
    match altered.into_iter().next() {
        Some(Ok(_)) => {
            tracing::warn!(topic, was = %policy, "topic was not compacted; its cleanup.policy is now compact");
            Ok(())
        }
        Some(Err((_, code))) => Err(format!("cleanup.policy {policy} not changed: {code}")),
        None => Err("no answer to the configuration change".into()),
    }
}

/// What a compacted topic Palisade creates is set to besides its policy: compacted often (a segment rolls every
/// 10 min), so a restore reads little more than the newest record of each key.
const COMPACTION: &[(&str, &str)] = &[("segment.ms", "600000"), ("min.cleanable.dirty.ratio", "0.1")];

pub struct KafkaBus {
    config: KafkaConfig,
    settings: ClientSettings,
    producer: FutureProducer,
}

impl KafkaBus {
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        let settings = ClientSettings::resolve(config)?;
        let producer = settings.create(&producer_config(&settings, config))?;
        Ok(Self { config: config.clone(), settings, producer })
    }

    /// Creates the topics that are missing; existing topics are left as they are.
    pub async fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = self.settings.create(&self.settings.client_config())?;
        let topic_max_message_bytes = producer_message_max_bytes(&self.config);
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                NewTopic::new(t, self.config.topic_partitions, TopicReplication::Fixed(self.config.topic_replication))
                    .set("max.message.bytes", &topic_max_message_bytes)
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|source| BusError::Kafka { topic: topics.join(","), source })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Admin { topic, reason: code.to_string() });
                }
            }
        }
        Ok(())
    }

    /// Creates the compacted topics that are missing (a state changelog: the newest record of each key is kept), and
    /// compacts the existing ones that are not.
    pub async fn ensure_compacted_topics(&self, topics: &[&str]) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = self.settings.create(&self.settings.client_config())?;
        let topic_max_message_bytes = producer_message_max_bytes(&self.config);
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                NewTopic::new(t, self.config.topic_partitions, TopicReplication::Fixed(self.config.topic_replication))
                    .set("max.message.bytes", &topic_max_message_bytes)
                    .set("cleanup.policy", "compact")
                    .set(COMPACTION[0].0, COMPACTION[0].1)
                    .set(COMPACTION[1].0, COMPACTION[1].1)
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|source| BusError::Kafka { topic: topics.join(","), source })?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => compact_existing(&admin, &topic).await,
                Err((topic, code)) => return Err(BusError::Admin { topic, reason: code.to_string() }),
            }
        }
        Ok(())
    }

    pub(crate) async fn publish(&self, outgoing: Outgoing<'_>) -> Result<(), BusError> {
        self.producer
            .send(future_record(&outgoing), Duration::from_millis(u64::from(self.config.message_timeout_ms)))
            .await
            .map(|_| ())
            .map_err(|(source, _)| BusError::from_send(outgoing.topic, outgoing_bytes(&outgoing), &self.config, source))
    }

    pub(crate) fn subscribe(
        &self,
        topics: &[&str],
        group: &str,
        assignment: Assignment,
    ) -> Result<KafkaSubscription, BusError> {
        subscribe(&self.settings, &self.config, topics, (group, assignment))
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Every partition of `topic` from `next[partition]` (else its first offset) on, outside any group (nothing
    /// committed): a compacted table each instance reads whole (`Bus::table`). Partitions added later are not
    /// followed.
    pub(crate) fn table(
        &self,
        topic: &str,
        next: &std::collections::BTreeMap<i32, i64>,
    ) -> Result<KafkaSubscription, BusError> {
        use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
        let kafka = |source| BusError::Kafka { topic: topic.to_owned(), source };
        let mut client = reader_config(&self.settings, &self.config, "table");
        // An offset compaction has passed reads from the first record left, never from the end.
        client.set("auto.offset.reset", "earliest");
        let context = TrackingContext { rebalances: Arc::default(), keep: false };
        let consumer: GroupConsumer = self.settings.create_with(&client, context)?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(kafka)?;
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let from = next.get(&partition.id()).map_or(Offset::Beginning, |&offset| Offset::Offset(offset));
            assignment.add_partition_offset(topic, partition.id(), from).map_err(kafka)?;
        }
        if assignment.count() == 0 {
            return Err(BusError::Admin { topic: topic.to_owned(), reason: "the topic has no partitions".into() });
        }
        consumer.assign(&assignment).map_err(kafka)?;
        Ok(KafkaSubscription { consumer: Arc::new(consumer), rebalances: Arc::default() })
    }

    pub(crate) fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// `check_connection` with this bus's settings.
    pub fn check_connection(&self, timeout: Duration) -> Result<(), BusError> {
        check_connection(&self.settings, &self.config.bootstrap_servers, timeout)
    }

    /// Waits until every message sent so far is acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        use rdkafka::producer::Producer as _;
        self.producer.flush(timeout).map_err(|source| BusError::Kafka { topic: "*".into(), source })
    }
}

/// How a group's partitions move between its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// librdkafka's default (range, round-robin): every member gives everything up at each rebalance.
    Eager,
    /// Cooperative-sticky: a member joining or leaving moves only the partitions that must move (a stage that
    /// keeps state per partition). Every member of a group must use the same.
    Cooperative,
}

/// A consumer in group `<group_prefix>-<group>` on `topics`, with `settings` (resolved from `config`).
fn subscribe(
    settings: &ClientSettings,
    config: &KafkaConfig,
    topics: &[&str],
    (group, assignment): (&str, Assignment),
) -> Result<KafkaSubscription, BusError> {
    let rebalances = Arc::new(Rebalances::default());
    let mut client = settings.client_config();
    client
        .set("client.id", &config.client_id)
        .set("group.id", format!("{}-{group}", config.group_prefix))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000");
    if assignment == Assignment::Cooperative {
        client.set("partition.assignment.strategy", "cooperative-sticky");
    }
    let context = TrackingContext { rebalances: Arc::clone(&rebalances), keep: assignment == Assignment::Cooperative };
    let consumer: GroupConsumer = settings.create_with(&client, context)?;
    consumer.subscribe(topics).map_err(|source| BusError::Kafka { topic: topics.join(","), source })?;
    Ok(KafkaSubscription { consumer: Arc::new(consumer), rebalances })
}

/// The partitions this consumer lost since a stage last asked. The rebalance callback runs inside the
/// consumer's poll, so a stage that asks between two receives sees every revocation before its next input.
#[derive(Default)]
pub struct Rebalances {
    revoked: std::sync::Mutex<Vec<(String, i32)>>,
}

/// A group consumer's context: records revocations for the stage (rdkafka still performs the (incremental)
/// assignment itself).
pub struct TrackingContext {
    rebalances: Arc<Rebalances>,
    /// Whether revocations are kept for the stage (only a cooperative group's stage asks for them; the others'
    /// list would only grow).
    keep: bool,
}

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                if self.keep {
                    let mut revoked = self.rebalances.revoked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    revoked.extend(list.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
                }
                tracing::info!(partitions = list.count(), "partitions revoked");
            }
            Rebalance::Assign(list) if list.count() > 0 => {
                tracing::info!(partitions = list.count(), "partitions assigned");
            }
            _ => {}
        }
    }
}

type GroupConsumer = StreamConsumer<TrackingContext>;

/// A consumer alone, for a source read on another cluster (no producer: its credential may only allow reading):
/// the connection is checked first, as `check_connection` does.
pub fn source_subscription(
    config: &KafkaConfig,
    topics: &[&str],
    group: &str,
    timeout: Duration,
    stopped: &dyn Fn() -> bool,
) -> Result<KafkaSubscription, BusError> {
    let settings = ClientSettings::resolve(config)?;
    check_connection_unless(&settings, &config.bootstrap_servers, timeout, stopped)?;
    subscribe(&settings, config, topics, (group, Assignment::Eager))
}

pub struct KafkaSubscription {
    consumer: Arc<GroupConsumer>,
    rebalances: Arc<Rebalances>,
}

impl KafkaSubscription {
    pub(crate) async fn next(&mut self) -> Result<Delivery, BusError> {
        let borrowed = self.consumer.recv().await.map_err(|source| BusError::Kafka { topic: "*".into(), source })?;
        let headers = borrowed
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key.to_owned(), header.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let message = Message {
            topic: borrowed.topic().to_owned(),
            partition: borrowed.partition(),
            offset: borrowed.offset(),
            key: borrowed.key().map(<[u8]>::to_vec),
            payload: borrowed.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp_ms: borrowed.timestamp().to_millis(),
        };
        let ack = KafkaAck {
            consumer: Arc::clone(&self.consumer),
            topic: message.topic.clone(),
            partition: message.partition,
            offset: message.offset,
        };
        Ok(Delivery { message, ack: AckToken::Kafka(ack) })
    }

    /// Partitions revoked since the last call.
    pub(crate) fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.rebalances.revoked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    pub(crate) fn close(self) -> Result<(), BusError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(source) => Err(BusError::Kafka { topic: "*".into(), source }),
        }
    }
}

pub(crate) struct KafkaAck {
    consumer: Arc<GroupConsumer>,
    topic: String,
    partition: i32,
    offset: i64,
}

impl KafkaAck {
    pub(crate) fn store(self) -> Result<(), BusError> {
        self.consumer
            .store_offset(&self.topic, self.partition, self.offset)
            .map_err(|source| BusError::Kafka { topic: self.topic, source })
    }
}

/// How long a transaction call (init, send offsets, commit, abort) may take before it is an error.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Consume–transform–produce with Kafka transactions: a batch's records and the consumed offsets commit together,
/// so a `read_committed` reader sees each record once even when the process dies mid-batch (the broker aborts
/// the open transaction when the same `transactional.id` starts again). The subscription's own offset commits
/// are not used: inputs settled this way are never acknowledged through `Delivery::ack`.
pub struct TransactionalOutput {
    producer: Arc<FutureProducer>,
    consumer: Arc<GroupConsumer>,
    message_timeout_ms: u32,
    max_message_bytes: usize,
}

fn transaction_error(what: &str, source: rdkafka::error::KafkaError) -> BusError {
    BusError::Kafka { topic: format!("(transaction: {what})"), source }
}

impl TransactionalOutput {
    pub(crate) async fn new(
        bus: &KafkaBus,
        transactional_id: &str,
        subscription: &KafkaSubscription,
    ) -> Result<Self, BusError> {
        let config = bus.config();
        let producer: FutureProducer = bus.settings().create(
            producer_config(bus.settings(), config)
                .set("transactional.id", transactional_id)
                // A killed instance's open transaction holds back every `read_committed` reader of the
                // partitions it wrote (and a changelog restore) until the broker aborts it after this long;
                // librdkafka needs it at least the message timeout.
                .set("transaction.timeout.ms", transaction_timeout_ms(config).to_string()),
        )?;
        let producer = Arc::new(producer);
        let init = Arc::clone(&producer);
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer as _;
            init.init_transactions(TRANSACTION_TIMEOUT)
        })
        .await
        .expect("transaction init does not panic")
        .map_err(|e| transaction_error("init", e))?;
        Ok(Self {
            producer,
            consumer: Arc::clone(&subscription.consumer),
            message_timeout_ms: config.message_timeout_ms,
            max_message_bytes: config.max_message_bytes,
        })
    }

    /// Sends `records` and commits them with the offsets after `consumed` (topic, partition, offset of each
    /// input) in one transaction; on any failure the transaction is aborted and the error returned (the inputs
    /// are then delivered again after a restart or rebalance, and the aborted records stay invisible).
    pub async fn commit(&self, records: &[Outgoing<'_>], consumed: &[(String, i32, i64)]) -> Result<(), BusError> {
        self.commit_with_changes(records, &[], consumed).await
    }

    /// `commit`, with `changes` too: records sent to the partition given with each (a state changelog, whose
    /// partition follows the input's rather than the key's hash).
    pub async fn commit_with_changes(
        &self,
        records: &[Outgoing<'_>],
        changes: &[(i32, Outgoing<'_>)],
        consumed: &[(String, i32, i64)],
    ) -> Result<(), BusError> {
        use rdkafka::producer::Producer as _;
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || producer.begin_transaction())
            .await
            .expect("begin does not panic")
            .map_err(|e| transaction_error("begin", e))?;
        let result = self.send_and_commit(records, changes, consumed).await;
        if result.is_err() {
            let producer = Arc::clone(&self.producer);
            let _ = tokio::task::spawn_blocking(move || producer.abort_transaction(TRANSACTION_TIMEOUT)).await;
        }
        result
    }

    async fn send_and_commit(
        &self,
        records: &[Outgoing<'_>],
        changes: &[(i32, Outgoing<'_>)],
        consumed: &[(String, i32, i64)],
    ) -> Result<(), BusError> {
        use rdkafka::producer::Producer as _;
        let timeout = Duration::from_millis(u64::from(self.message_timeout_ms));
        let sends = records
            .iter()
            .map(|outgoing| future_record(outgoing))
            .chain(changes.iter().map(|(partition, outgoing)| future_record(outgoing).partition(*partition)))
            .map(|record| self.producer.send(record, timeout));
        let outgoings = records.iter().chain(changes.iter().map(|(_, outgoing)| outgoing));
        for (result, outgoing) in futures::future::join_all(sends).await.into_iter().zip(outgoings) {
            result.map_err(|(source, _)| match source.rdkafka_error_code() {
                Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
                    BusError::TooLarge {
                        topic: outgoing.topic.to_owned(),
                        bytes: outgoing_bytes(outgoing),
                        limit: self.max_message_bytes,
                    }
                }
                _ => transaction_error("send", source),
            })?;
        }
        let mut next: std::collections::BTreeMap<(String, i32), i64> = std::collections::BTreeMap::new();
        for (topic, partition, offset) in consumed {
            let entry = next.entry((topic.clone(), *partition)).or_insert(offset + 1);
            *entry = (*entry).max(offset + 1);
        }
        let mut offsets = rdkafka::TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            offsets
                .add_partition_offset(&topic, partition, rdkafka::Offset::Offset(offset))
                .map_err(|e| transaction_error("offsets", e))?;
        }
        let metadata = self.consumer.group_metadata().ok_or_else(|| BusError::Admin {
            topic: "(transaction)".into(),
            reason: "the consumer has no group metadata yet".into(),
        })?;
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || {
            producer.send_offsets_to_transaction(&offsets, &metadata, TRANSACTION_TIMEOUT)?;
            // A retriable failure (a timeout) leaves the commit to be called again, not aborted.
            let mut attempts = 0;
            loop {
                match producer.commit_transaction(TRANSACTION_TIMEOUT) {
                    Err(rdkafka::error::KafkaError::Transaction(error)) if error.is_retriable() && attempts < 3 => {
                        attempts += 1;
                    }
                    other => return other,
                }
            }
        })
        .await
        .expect("commit does not panic")
        .map_err(|e| transaction_error("commit", e))
    }
}

/// Where a topic range starts or ends: an offset (the same on every partition) or an event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeBound {
    Offset(i64),
    TimeMs(i64),
}

/// Reads one topic from `from` (default: each partition's first offset) to `to` (default: the end as it is when
/// the read starts; an offset bound is exclusive, a time bound inclusive), with its own consumer outside any
/// group: nothing is committed and no running stage is disturbed. `each` gets every message with the count read
/// and the count in range so far.
pub fn read_range(
    config: &KafkaConfig,
    topic: &str,
    from: Option<RangeBound>,
    to: Option<RangeBound>,
    each: impl FnMut(Message, u64, u64),
) -> Result<u64, BusError> {
    read_partitions(config, topic, (from, to), each)
}

/// How many partitions `topic` has.
pub fn partition_count(config: &KafkaConfig, topic: &str) -> Result<i32, BusError> {
    use rdkafka::consumer::BaseConsumer;
    let settings = ClientSettings::resolve(config)?;
    let consumer: BaseConsumer = settings.create(settings.client_config().set("client.id", &config.client_id))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|source| BusError::Kafka { topic: topic.to_owned(), source })?;
    let count = metadata.topics().iter().map(|t| t.partitions().len()).sum::<usize>();
    match i32::try_from(count) {
        Ok(count) if count > 0 => Ok(count),
        _ => Err(BusError::Admin { topic: topic.to_owned(), reason: "the topic does not exist".into() }),
    }
}

/// A consumer outside any group (`<client_id>-<role>`, nothing committed) that reads only committed records and
/// reports each partition's end: a transactional topic ends in commit markers, which are never delivered, so the
/// end of a partition is known from the EOF event.
fn committed_reader(
    settings: &ClientSettings,
    config: &KafkaConfig,
    role: &str,
) -> Result<rdkafka::consumer::BaseConsumer<ReaderContext>, BusError> {
    settings.create_with(reader_config(settings, config, role).set("enable.partition.eof", "true"), ReaderContext)
}

/// A consumer's settings for reading outside any group (`<client_id>-<role>`, nothing committed), committed records
/// only: the committed readers' and the table's.
fn reader_config(settings: &ClientSettings, config: &KafkaConfig, role: &str) -> ClientConfig {
    let mut client = settings.client_config();
    client
        .set("client.id", format!("{}-{role}", config.client_id))
        .set("group.id", format!("{}-{role}-unused", config.group_prefix))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed");
    client
}

/// A committed reader's context: the end of a partition, which it asks to be told of and reads from `poll`, is
/// not an error to log (librdkafka also reports it through the error callback, which the default context logs at
/// error level: one line per restore and replay). Other errors are logged as the default does.
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        tracing::error!(%error, reason, "librdkafka error");
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// How long a changelog read may wait for an open transaction to end before it is an error: at least 120 s, and
/// past the transaction timeout (`transaction_timeout_ms`) with a minute to spare, since a killed instance's open
/// transaction (a new pod has another `transactional.id`, so nothing fences it) lasts until the broker aborts it.
fn changelog_read_timeout(config: &KafkaConfig) -> Duration {
    Duration::from_secs(120)
        .max(Duration::from_millis(u64::from(transaction_timeout_ms(config))) + Duration::from_secs(60))
}

/// `transaction.timeout.ms` of the transactional producers: the delivery timeout, at least 10 s.
fn transaction_timeout_ms(config: &KafkaConfig) -> u32 {
    config.message_timeout_ms.max(10_000)
}

/// Every committed record of one partition of `topic` up to its high watermark as it is when the read starts
/// (a changelog to restore from). A `read_committed` reader's end of partition is the last stable offset, which
/// an open transaction holds back: this waits, up to `changelog_read_timeout`, until that transaction ends,
/// so no record committed before the read started is missed.
pub fn read_partition(
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
    mut each: impl FnMut(Message),
) -> Result<u64, BusError> {
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let kafka = |source| BusError::Kafka { topic: topic.to_owned(), source };
    let settings = ClientSettings::resolve(config)?;
    let consumer = committed_reader(&settings, config, "changelog")?;
    let timeout = Duration::from_secs(10);
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout).map_err(kafka)?;
    if low >= high {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(low)).map_err(kafka)?;
    consumer.assign(&assignment).map_err(kafka)?;
    let read_timeout = changelog_read_timeout(config);
    let deadline = std::time::Instant::now() + read_timeout;
    let mut read = 0;
    loop {
        if std::time::Instant::now() > deadline {
            let reason = format!(
                "partition {partition} not read to offset {high} within {} s (an open transaction?)",
                read_timeout.as_secs()
            );
            return Err(BusError::Admin { topic: topic.to_owned(), reason });
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = match result {
            // At the last stable offset: done if that is the high watermark (what is left are markers and
            // aborted records), else an open transaction holds it back.
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                let position = consumer.position().map_err(kafka)?;
                let at = position.find_partition(topic, partition).map(|e| e.offset());
                match at {
                    Some(Offset::Offset(at)) if at >= high => return Ok(read),
                    _ => continue,
                }
            }
            other => other.map_err(kafka)?,
        };
        let offset = message.offset();
        if offset >= high {
            return Ok(read);
        }
        read += 1;
        each(Message {
            topic: topic.to_owned(),
            partition,
            offset,
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: Vec::new(),
            timestamp_ms: message.timestamp().to_millis(),
        });
        if offset + 1 >= high {
            return Ok(read);
        }
    }
}

/// The next offset of one partition (its high watermark).
pub fn high_watermark(config: &KafkaConfig, topic: &str, partition: i32) -> Result<i64, BusError> {
    use rdkafka::consumer::BaseConsumer;
    let settings = ClientSettings::resolve(config)?;
    let consumer: BaseConsumer = settings.create(settings.client_config().set("client.id", &config.client_id))?;
    let (_, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .map_err(|source| BusError::Kafka { topic: topic.to_owned(), source })?;
    Ok(high)
}

fn read_partitions(
    config: &KafkaConfig,
    topic: &str,
    (from, to): (Option<RangeBound>, Option<RangeBound>),
    mut each: impl FnMut(Message, u64, u64),
) -> Result<u64, BusError> {
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let kafka = |source| BusError::Kafka { topic: topic.to_owned(), source };
    let settings = ClientSettings::resolve(config)?;
    check_connection(&settings, &config.bootstrap_servers, Duration::from_secs(30))?;
    let consumer = committed_reader(&settings, config, "replay")?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(kafka)?;
    let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    if partitions.is_empty() {
        return Err(BusError::Admin { topic: topic.to_owned(), reason: "the topic does not exist".into() });
    }
    // Time bounds become offsets through the broker's time index.
    let offsets_for = |time_ms: i64| -> Result<Vec<Option<i64>>, BusError> {
        let mut query = TopicPartitionList::new();
        for &partition in &partitions {
            query.add_partition_offset(topic, partition, Offset::Offset(time_ms)).map_err(kafka)?;
        }
        let found = consumer.offsets_for_times(query, timeout).map_err(kafka)?;
        Ok(partitions
            .iter()
            .map(|&p| match found.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            })
            .collect())
    };
    let from_times = match from {
        Some(RangeBound::TimeMs(ms)) => Some(offsets_for(ms)?),
        _ => None,
    };
    let mut ranges = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for (index, &partition) in partitions.iter().enumerate() {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout).map_err(kafka)?;
        let start = match (from, &from_times) {
            (Some(RangeBound::Offset(offset)), _) => offset.clamp(low, high),
            (Some(RangeBound::TimeMs(_)), Some(found)) => found[index].unwrap_or(high).clamp(low, high),
            _ => low,
        };
        let end = match to {
            Some(RangeBound::Offset(offset)) => offset.clamp(start, high),
            _ => high,
        };
        if start < end {
            assignment.add_partition_offset(topic, partition, Offset::Offset(start)).map_err(kafka)?;
            ranges.push((partition, start, end));
        }
    }
    let total: u64 = ranges.iter().map(|(_, start, end)| (end - start) as u64).sum();
    if ranges.is_empty() {
        return Ok(0);
    }
    consumer.assign(&assignment).map_err(kafka)?;
    let mut open: std::collections::HashMap<i32, i64> = ranges.iter().map(|(p, _, end)| (*p, *end)).collect();
    let mut read = 0;
    let mut idle_since = std::time::Instant::now();
    while !open.is_empty() {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            if idle_since.elapsed() > Duration::from_secs(30) {
                let reason = format!("no message for 30 s with {} partition(s) short of their end", open.len());
                return Err(BusError::Admin { topic: topic.to_owned(), reason });
            }
            continue;
        };
        idle_since = std::time::Instant::now();
        let message = match result {
            Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                open.remove(&partition);
                continue;
            }
            other => other.map_err(kafka)?,
        };
        let partition = message.partition();
        let Some(&end) = open.get(&partition) else { continue };
        if message.offset() >= end {
            open.remove(&partition);
            continue;
        }
        if message.offset() + 1 >= end {
            open.remove(&partition);
        }
        let timestamp_ms = message.timestamp().to_millis();
        if let (Some(RangeBound::TimeMs(until)), Some(at)) = (to, timestamp_ms)
            && at > until
        {
            open.remove(&partition);
            continue;
        }
        read += 1;
        let owned = Message {
            topic: topic.to_owned(),
            partition,
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: Vec::new(),
            timestamp_ms,
        };
        each(owned, read, total);
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_message_timeout(ms: u32) -> KafkaConfig {
        let mut config: KafkaConfig =
            crate::config::load(None, [("PALISADE__BOOTSTRAP_SERVERS".to_owned(), "k:9092".to_owned())]).unwrap();
        config.message_timeout_ms = ms;
        config
    }

    /// A restore outwaits the transaction a killed instance left open, whatever the delivery timeout.
    #[test]
    fn a_changelog_read_waits_past_the_transaction_timeout() {
        assert_eq!(transaction_timeout_ms(&with_message_timeout(5_000)), 10_000);
        assert_eq!(changelog_read_timeout(&with_message_timeout(30_000)), Duration::from_secs(120));
        assert_eq!(changelog_read_timeout(&with_message_timeout(300_000)), Duration::from_secs(360));
    }
}
