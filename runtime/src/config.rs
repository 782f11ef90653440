//! Config loading: a TOML file (optional) overlaid with environment variables, then deserialized into serde
//! structs that reject unknown fields. `PALISADE__KAFKA__BOOTSTRAP_SERVERS=host:9092` sets `kafka.bootstrap_servers`;
//! a value that parses as a TOML literal (number, boolean, array) is taken as one, anything else as a string.
//! Validation is separate from loading and does no I/O.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

pub const ENV_PREFIX: &str = "PALISADE__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; pass an existing file with --config or none at all")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {name} sets `{key}`, which cannot be placed in the config: {reason}")]
    Environment { name: String, key: String, reason: String },
    #[error("invalid configuration: {0}")]
    Invalid(Box<toml::de::Error>),
    #[error("invalid value for `{field}`: {reason}")]
    Value { field: &'static str, reason: String },
}

/// Reads `path` (if any), applies `PALISADE__*` overrides from `env`, and deserializes the result.
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table = match path {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            text.parse::<toml::Table>()
                .map_err(|source| ConfigError::Parse { path: path.to_owned(), source: Box::new(source) })?
        }
        None => toml::Table::new(),
    };
    let mut overrides: Vec<(String, String)> =
        env.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
    overrides.sort();
    for (name, raw) in overrides {
        apply_override(&mut table, &name, &raw)?;
    }
    T::deserialize(toml::Value::Table(table)).map_err(|error| ConfigError::Invalid(Box::new(error)))
}

fn apply_override(table: &mut toml::Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
    let key = path.join(".");
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Environment { name: name.to_owned(), key, reason: "empty path segment".into() });
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut parsed| parsed.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let (last, parents) = path.split_last().expect("at least one segment");
    let mut cursor = table;
    for segment in parents {
        let entry = cursor.entry(segment.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = entry.as_table_mut().ok_or_else(|| ConfigError::Environment {
            name: name.to_owned(),
            key: key.clone(),
            reason: format!("`{segment}` is not a table"),
        })?;
    }
    cursor.insert(last.clone(), value);
    Ok(())
}

/// Kafka connection settings. Absent means the in-process bus (`palisade run` only).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Consumer group prefix; each stage appends its own name (`<prefix>-detect`, ...).
    #[serde(default = "default_group_prefix")]
    pub group_prefix: String,
    /// Client id reported to the brokers.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Partitions for topics this process creates when they are missing.
    #[serde(default = "default_partitions")]
    pub topic_partitions: i32,
    /// Replication factor for topics this process creates.
    #[serde(default = "default_replication")]
    pub topic_replication: i32,
    /// Create missing topics at start-up.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Producer linger before a batch is sent, in milliseconds.
    #[serde(default = "default_linger_ms")]
    pub producer_linger_ms: u32,
    /// Time to wait for a delivery acknowledgement before the send is reported as failed, in milliseconds.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u32,
    /// Largest record this process sends, in bytes (key, value and headers): the producer's `message.max.bytes`
    /// and the `max.message.bytes` of topics it creates. A larger record is refused at once, never retried: the
    /// stage dead-letters a truncated copy with the reason. Keep it at or below the brokers' `message.max.bytes`.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// TLS to the brokers; present means every connection is encrypted (`security.protocol` SSL or SASL_SSL).
    #[serde(default)]
    pub tls: Option<KafkaTlsConfig>,
    /// SASL authentication; present means `security.protocol` SASL_SSL (with `[kafka.tls]`) or SASL_PLAINTEXT.
    #[serde(default)]
    pub sasl: Option<KafkaSaslConfig>,
    /// Further librdkafka properties, passed through as given (`"socket.keepalive.enable" = true`). The ones
    /// Palisade sets itself are refused (see `RESERVED_KAFKA_PROPERTIES`); a secret (a property whose name says
    /// password, secret or private key) must come from `{ file = "…" }` or `{ env = "NAME" }`, never inline.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, KafkaProperty>,
}

/// `[kafka.tls]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaTlsConfig {
    /// PEM file of the CA certificates that sign the brokers' certificates; absent: the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS, with `key_file`.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// PEM private key of `certificate_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// File holding the password of an encrypted `key_file`; or `PALISADE_KAFKA_TLS_KEY_PASSWORD`.
    #[serde(default)]
    pub key_password_file: Option<PathBuf>,
    /// Check that a broker's certificate names the host it was reached by (on by default).
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

/// SASL mechanisms Palisade configures (librdkafka's spelling).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub const fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `[kafka.sasl]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    pub username: String,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password, when there is no file; absent: `PALISADE_KAFKA_SASL_PASSWORD`
    /// (the pipeline's `[kafka]` only: another connection must name its own, so one cluster's password is never
    /// sent to another).
    #[serde(default)]
    pub password_env: Option<String>,
    /// Allow PLAIN without `[kafka.tls]`, which sends the password in clear (refused unless set).
    #[serde(default)]
    pub allow_plain_without_tls: bool,
}

/// A pass-through property's value: as written, or read from a file or an environment variable at start-up.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum KafkaProperty {
    Text(String),
    Integer(i64),
    Flag(bool),
    File { file: PathBuf },
    Env { env: String },
}

/// Properties Palisade sets itself, and their librdkafka aliases (with both set, which one wins is not defined):
/// its delivery guarantees, its identity and its timing depend on them, so `[kafka.properties]` may not change
/// them.
pub const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "isolation.level",
    "enable.partition.eof",
    "session.timeout.ms",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
    "message.max.bytes",
    "linger.ms",
    "queue.buffering.max.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "compression.type",
    "compression.codec",
    // Keys pick partitions, and a partition's order is what per-namespace and per-node state relies on.
    "partitioner",
    "security.protocol",
    "enable.ssl.certificate.verification",
    "ssl.endpoint.identification.algorithm",
    // librdkafka loads these as shared libraries or engines: code in the process.
    "plugin.library.paths",
];

/// `ssl.*` properties that only tune the handshake; every other `ssl.*` (trust, identity, keystores, engines,
/// providers) and every `sasl.*` belongs to `[kafka.tls]` / `[kafka.sasl]`, which check and log what they set.
const TUNING_SSL_PROPERTIES: &[&str] =
    &["ssl.cipher.suites", "ssl.curves.list", "ssl.sigalgs.list", "ssl.crl.location"];

/// The name librdkafka applies a property under: a name it does not know globally loses a `topic.` prefix and
/// sets the default topic configuration (`topic.auto.offset.reset` is `auto.offset.reset`).
fn effective_kafka_property(name: &str) -> &str {
    name.strip_prefix("topic.").unwrap_or(name)
}

/// Why `[kafka.properties]` may not set `name`, if it may not.
fn refused_kafka_property(name: &str) -> Option<&'static str> {
    let name = effective_kafka_property(name);
    if RESERVED_KAFKA_PROPERTIES.contains(&name) {
        return Some("is set by Palisade (see [kafka]) and cannot be overridden");
    }
    if name.starts_with("sasl.") {
        return Some("belongs to [kafka.sasl]");
    }
    if (name.starts_with("ssl.") || name.starts_with("ssl_")) && !TUNING_SSL_PROPERTIES.contains(&name) {
        return Some(
            "belongs to [kafka.tls] (only ssl.cipher.suites, ssl.curves.list, ssl.sigalgs.list and ssl.crl.location pass)",
        );
    }
    None
}

/// Whether a librdkafka property holds a secret by its name.
pub fn is_secret_kafka_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "passphrase", "key.pem", "private.key", "oauthbearer.config", "jaas"]
        .iter()
        .any(|word| name.contains(word))
}

impl KafkaConfig {
    /// librdkafka's `security.protocol` for these settings.
    pub fn security_protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    /// Pure validation of the security settings and pass-through properties: no I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls
            && tls.certificate_file.is_some() != tls.key_file.is_some()
        {
            return Err(ConfigError::Value {
                field: "kafka.tls",
                reason: "certificate_file and key_file go together (mutual TLS needs both)".into(),
            });
        }
        if let Some(sasl) = &self.sasl {
            if sasl.username.trim().is_empty() {
                return Err(ConfigError::Value { field: "kafka.sasl.username", reason: "empty".into() });
            }
            if sasl.mechanism == SaslMechanism::Plain && self.tls.is_none() && !sasl.allow_plain_without_tls {
                return Err(ConfigError::Value {
                    field: "kafka.sasl.mechanism",
                    reason: "PLAIN without [kafka.tls] sends the password in clear; add [kafka.tls], use SCRAM, or \
                             set kafka.sasl.allow_plain_without_tls = true"
                        .into(),
                });
            }
        }
        for (name, value) in &self.properties {
            if let Some(why) = refused_kafka_property(name) {
                return Err(ConfigError::Value { field: "kafka.properties", reason: format!("`{name}` {why}") });
            }
            let inline = matches!(value, KafkaProperty::Text(_) | KafkaProperty::Integer(_) | KafkaProperty::Flag(_));
            if inline && is_secret_kafka_property(name) {
                return Err(ConfigError::Value {
                    field: "kafka.properties",
                    reason: format!(
                        "`{name}` holds a secret: give it as {{ file = \"/path\" }} or {{ env = \"VARIABLE\" }}, not inline"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Kafka's broker default (`message.max.bytes` 1048588) less room for the record batch overhead.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

const fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

fn default_group_prefix() -> String {
    "palisade".to_owned()
}
fn default_client_id() -> String {
    "palisade".to_owned()
}
const fn default_partitions() -> i32 {
    3
}
const fn default_replication() -> i32 {
    1
}
const fn default_true() -> bool {
    true
}
const fn default_linger_ms() -> u32 {
    5
}
const fn default_message_timeout_ms() -> u32 {
    30_000
}

/// Topic names. The defaults are the names DESIGN.md gives.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Runtime events from the node collectors.
    #[serde(default = "topic_node_events")]
    pub node_events: String,
    /// Kubernetes audit events from the audit forwarder.
    #[serde(default = "topic_audit_events")]
    pub audit_events: String,
    /// Cloud control-plane activity records.
    #[serde(default = "topic_cloud_activity")]
    pub cloud_activity: String,
    /// Detector output, before enrichment.
    #[serde(default = "topic_detections")]
    pub detections: String,
    /// Enriched alerts, input of the sink.
    #[serde(default = "topic_enriched")]
    pub enriched: String,
    /// The SOC topic.
    #[serde(default = "topic_alerts")]
    pub alerts: String,
    /// Messages no stage could process, with the reason in the `palisade.error` header.
    #[serde(default = "topic_dead_letter")]
    pub dead_letter: String,
    /// Compacted table of cluster objects.
    #[serde(default = "topic_cluster_state")]
    pub cluster_state: String,
    /// Compacted changelog of the detect stage's windows and baselines: per input partition and detector a head
    /// record, and one record per key of a keyed state, written in the transaction that commits the inputs it
    /// covers.
    #[serde(default = "topic_detect_changelog")]
    pub detect_changelog: String,
    /// Internal: events the detect stage sends again under the key a detector's state needs (a user, a pod's
    /// namespace) when the input topic is keyed otherwise, so each key's state lives on one partition.
    #[serde(default = "topic_detect_rekeyed")]
    pub detect_rekeyed: String,
}

fn topic_node_events() -> String {
    "palisade.node.events".into()
}
fn topic_audit_events() -> String {
    "palisade.audit.events".into()
}
fn topic_cloud_activity() -> String {
    "palisade.cloud.activity".into()
}
fn topic_detections() -> String {
    "palisade.detections".into()
}
fn topic_enriched() -> String {
    "palisade.enriched".into()
}
fn topic_alerts() -> String {
    "palisade.alerts".into()
}
fn topic_dead_letter() -> String {
    "palisade.dead-letter".into()
}
fn topic_detect_rekeyed() -> String {
    "palisade.detect.rekeyed".into()
}
fn topic_detect_changelog() -> String {
    "palisade.detect.changelog".into()
}
fn topic_cluster_state() -> String {
    "palisade.cluster.state".into()
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            node_events: topic_node_events(),
            audit_events: topic_audit_events(),
            cloud_activity: topic_cloud_activity(),
            detections: topic_detections(),
            enriched: topic_enriched(),
            alerts: topic_alerts(),
            dead_letter: topic_dead_letter(),
            cluster_state: topic_cluster_state(),
            detect_changelog: topic_detect_changelog(),
            detect_rekeyed: topic_detect_rekeyed(),
        }
    }
}

impl TopicsConfig {
    pub fn all(&self) -> [&str; 9] {
        [
            &self.node_events,
            &self.audit_events,
            &self.cloud_activity,
            &self.detections,
            &self.enriched,
            &self.alerts,
            &self.dead_letter,
            &self.cluster_state,
            &self.detect_rekeyed,
        ]
    }
}

/// The runtime part of the configuration, shared by every stage.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Kafka; absent means the in-process bus.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// Topic names.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Address of the Prometheus `/metrics` endpoint; absent disables it.
    #[serde(default)]
    pub metrics_listen_addr: Option<String>,
}

impl RuntimeConfig {
    /// Pure validation: no I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(kafka) = &self.kafka {
            if kafka.bootstrap_servers.trim().is_empty() {
                return Err(ConfigError::Value {
                    field: "kafka.bootstrap_servers",
                    reason: "empty; give host:port of at least one broker".into(),
                });
            }
            if kafka.topic_partitions < 1 {
                return Err(ConfigError::Value {
                    field: "kafka.topic_partitions",
                    reason: "must be at least 1".into(),
                });
            }
            kafka.validate()?;
        }
        if let Some(addr) = &self.metrics_listen_addr
            && addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::Value {
                field: "metrics_listen_addr",
                reason: format!("`{addr}` is not ip:port"),
            });
        }
        let topics = self.topics.all();
        for (index, topic) in topics.iter().enumerate() {
            if topic.is_empty() || topics[index + 1..].contains(topic) {
                return Err(ConfigError::Value {
                    field: "topics",
                    reason: format!("topic `{topic}` is empty or used for two purposes"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_overrides_file_and_parses_literals() {
        let dir = std::env::temp_dir().join(format!("palisade-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[kafka]\nbootstrap_servers = \"a:1\"\ntopic_partitions = 2\n").unwrap();
        let config: RuntimeConfig = load(
            Some(&file),
            env(&[
                ("PALISADE__KAFKA__BOOTSTRAP_SERVERS", "b:2"),
                ("PALISADE__KAFKA__TOPIC_PARTITIONS", "6"),
                ("PALISADE__TOPICS__ALERTS", "soc.alerts"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        let kafka = config.kafka.unwrap();
        assert_eq!(kafka.bootstrap_servers, "b:2");
        assert_eq!(kafka.topic_partitions, 6);
        assert_eq!(config.topics.alerts, "soc.alerts");
        assert_eq!(config.topics.detections, "palisade.detections");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let error = load::<RuntimeConfig>(None, env(&[("PALISADE__KAFKA__BOOTSTRAP_SERVER", "a:1")])).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("bootstrap_server"), "{text}");
    }

    #[test]
    fn validation_rejects_duplicate_topics_and_bad_addresses() {
        let mut config = RuntimeConfig::default();
        assert!(config.validate().is_ok());
        config.topics.alerts = config.topics.detections.clone();
        assert!(matches!(config.validate(), Err(ConfigError::Value { field: "topics", .. })));
        let config = RuntimeConfig { metrics_listen_addr: Some("nope".into()), ..RuntimeConfig::default() };
        assert!(matches!(config.validate(), Err(ConfigError::Value { field: "metrics_listen_addr", .. })));
    }

    fn kafka(toml: &str) -> Result<RuntimeConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!("palisade-kafka-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let file = dir.join(format!("{}.toml", FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::write(&file, format!("[kafka]\nbootstrap_servers = \"b:1\"\n{toml}")).unwrap();
        let config: RuntimeConfig = load(Some(&file), Vec::new())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn kafka_security_settings_choose_the_protocol() {
        let protocol = |toml: &str| kafka(toml).unwrap().kafka.unwrap().security_protocol();
        assert_eq!(protocol(""), "plaintext");
        assert_eq!(protocol("[kafka.tls]\n"), "ssl");
        let sasl = "[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\n";
        assert_eq!(protocol(sasl), "sasl_plaintext");
        assert_eq!(protocol(&format!("{sasl}[kafka.tls]\nca_file = \"/ca.pem\"\n")), "sasl_ssl");
        let config = kafka("[kafka.tls]\n").unwrap().kafka.unwrap();
        assert!(config.tls.unwrap().verify_hostname, "host names are checked unless told otherwise");
    }

    #[test]
    fn kafka_security_mistakes_are_refused_with_their_field() {
        let field = |toml: &str| match kafka(toml) {
            Err(ConfigError::Value { field, reason }) => format!("{field}: {reason}"),
            other => panic!("{toml} gave {other:?}"),
        };
        assert!(field("[kafka.tls]\ncertificate_file = \"/c.pem\"\n").starts_with("kafka.tls:"));
        let plain = "[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\n";
        assert!(field(plain).contains("in clear"));
        assert!(kafka(&format!("{plain}allow_plain_without_tls = true\n")).is_ok());
        assert!(kafka(&format!("{plain}[kafka.tls]\n")).is_ok());
        assert!(
            field("[kafka.sasl]\nmechanism = \"SCRAM-SHA-256\"\nusername = \" \"\n").starts_with("kafka.sasl.username")
        );
        // A mechanism Palisade does not configure is refused by name.
        let error = kafka("[kafka.sasl]\nmechanism = \"GSSAPI\"\nusername = \"u\"\n").unwrap_err().to_string();
        assert!(error.contains("GSSAPI"), "{error}");
        // Palisade's own properties cannot be overridden, however they are spelled: aliases, the `topic.` prefix
        // librdkafka strips, and the trust, identity and library-loading settings outside [kafka.tls].
        for refused in [
            "enable.auto.offset.store",
            "isolation.level",
            "topic.auto.offset.reset",
            "topic.request.required.acks",
            "queue.buffering.max.ms",
            "delivery.timeout.ms",
            "compression.codec",
            "security.protocol",
            "sasl.password",
            "sasl.mechanisms",
            "ssl.ca.pem",
            "ssl.certificate.pem",
            "ssl.keystore.location",
            "ssl.engine.location",
            "ssl.providers",
            "plugin.library.paths",
        ] {
            let reason = field(&format!("[kafka.properties]\n\"{refused}\" = \"x\"\n"));
            assert!(reason.starts_with(&format!("kafka.properties: `{refused}`")), "{reason}");
        }
        assert!(kafka("[kafka.properties]\n\"ssl.cipher.suites\" = \"ECDHE\"\n").is_ok(), "handshake tuning passes");
        // Secrets only from files or variables.
        let reason = field("[kafka.properties]\n\"custom.secret\" = \"hunter2\"\n");
        assert!(reason.contains("holds a secret") && !reason.contains("hunter2"), "{reason}");
        assert!(kafka("[kafka.properties]\n\"custom.secret\" = { env = \"X\" }\n").is_ok());
    }

    #[test]
    fn kafka_properties_take_text_numbers_flags_files_and_variables() {
        let config = kafka(
            "[kafka.properties]\n\"socket.keepalive.enable\" = true\n\"fetch.wait.max.ms\" = 100\n\
             \"ssl.cipher.suites\" = \"ECDHE\"\n\"client.rack\" = { file = \"/run/rack\" }\n",
        )
        .unwrap();
        let properties = config.kafka.unwrap().properties;
        assert_eq!(properties["socket.keepalive.enable"], KafkaProperty::Flag(true));
        assert_eq!(properties["fetch.wait.max.ms"], KafkaProperty::Integer(100));
        assert_eq!(properties["ssl.cipher.suites"], KafkaProperty::Text("ECDHE".into()));
        assert_eq!(properties["client.rack"], KafkaProperty::File { file: "/run/rack".into() });
    }
}
