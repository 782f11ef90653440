//! The Kafka bus through the testbed broker's secured listeners (`scripts/testbed up kafka`): SASL over TLS with
//! each mechanism, and mutual TLS, carry records both ways; a wrong password, an untrusted broker certificate and a
//! client certificate the broker does not trust each stop the start-up check with what to check, not a retry
//! loop, and no error text holds a secret.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{next, unique};
use palisade_runtime::bus::Outgoing;
use palisade_runtime::kafka::{ClientSettings, KafkaBus, check_connection};
use palisade_runtime::{Bus, BusError, KafkaConfig};

/// Long enough that a refusal recognised at once and a wait that ran out cannot be confused.
const CHECK: Duration = Duration::from_secs(60);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/testbed up kafka` and `eval \"$(scripts/testbed env)\"`")
    })
}

fn tls(file: &str) -> String {
    PathBuf::from(env("PALISADE_TEST_KAFKA_TLS")).join(file).to_string_lossy().into_owned()
}

fn config(pairs: &[(&str, String)]) -> KafkaConfig {
    let config: KafkaConfig = palisade_runtime::config::load(
        None,
        pairs.iter().map(|(key, value)| (format!("PALISADE__{key}"), value.clone())).collect::<Vec<_>>(),
    )
    .unwrap();
    palisade_runtime::RuntimeConfig { kafka: Some(config.clone()), ..Default::default() }.validate().unwrap();
    config
}

fn sasl_ssl(mechanism: &str, username: &str, password_file: &str) -> KafkaConfig {
    config(&[
        ("BOOTSTRAP_SERVERS", env("PALISADE_TEST_KAFKA_SASL_SSL")),
        ("TOPIC_PARTITIONS", "1".into()),
        ("TLS__CA_FILE", tls("ca.pem")),
        ("SASL__MECHANISM", mechanism.into()),
        ("SASL__USERNAME", username.into()),
        ("SASL__PASSWORD_FILE", password_file.into()),
    ])
}

fn mtls(certificate: &str, ca: &str) -> KafkaConfig {
    config(&[
        ("BOOTSTRAP_SERVERS", env("PALISADE_TEST_KAFKA_MTLS")),
        ("TOPIC_PARTITIONS", "1".into()),
        ("TLS__CA_FILE", tls(ca)),
        ("TLS__CERTIFICATE_FILE", tls(&format!("{certificate}.pem"))),
        ("TLS__KEY_FILE", tls(&format!("{certificate}.key"))),
    ])
}

/// A record published with `config` is read back with it, by a consumer group, with its key and headers.
async fn round_trip(config: &KafkaConfig) {
    let admin = KafkaBus::new(config).unwrap();
    admin.check_connection(CHECK).unwrap();
    let topic = unique("secured");
    admin.ensure_topics(&[&topic]).await.unwrap();
    let bus = Bus::Kafka(std::sync::Arc::new(KafkaBus::new(config).unwrap()));
    let headers = [("palisade.stage", b"test".as_slice())];
    bus.publish(Outgoing { topic: &topic, key: Some(b"k"), payload: b"through TLS", headers: &headers }).await.unwrap();
    let mut subscription = bus.subscribe(&[&topic], &unique("group")).unwrap();
    let delivery = next(&mut subscription).await;
    assert_eq!(delivery.message.payload, b"through TLS");
    assert_eq!(delivery.message.key.as_deref(), Some(b"k".as_slice()));
    assert_eq!(delivery.message.header("palisade.stage"), Some(b"test".as_slice()));
    delivery.ack().unwrap();
    subscription.close().unwrap();
}

/// The start-up check's error, which must come before `CHECK` runs out and hold no secret.
fn refused(config: &KafkaConfig, secret: &str) -> String {
    let settings = ClientSettings::resolve(config).unwrap();
    let error = check_connection(&settings, &config.bootstrap_servers, CHECK).expect_err("the check fails");
    let text = error.to_string();
    assert!(matches!(error, BusError::Connect { .. }), "{text}");
    assert!(!text.contains("gave up after"), "refused at once, not after waiting: {text}");
    assert!(secret.is_empty() || !text.contains(secret), "no secret in the error: {text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn sasl_over_tls_carries_records_with_each_mechanism() {
    let password = tls("scram.password");
    round_trip(&sasl_ssl("SCRAM-SHA-512", "palisade", &password)).await;
    round_trip(&sasl_ssl("SCRAM-SHA-256", "palisade", &password)).await;
    round_trip(&sasl_ssl("PLAIN", "palisade-plain", &tls("plain.password"))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_carries_records() {
    round_trip(&mtls("client", "ca.pem")).await;
}

#[test]
fn a_wrong_password_stops_the_check_with_what_to_check() {
    let dir = std::env::temp_dir().join(unique("wrong-password"));
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = dir.join("password");
    std::fs::write(&wrong, "not-the-password-4711\n").unwrap();
    let text = refused(&sasl_ssl("SCRAM-SHA-512", "palisade", wrong.to_str().unwrap()), "not-the-password-4711");
    assert!(text.contains("refused the SASL credentials"), "{text}");
    // An unknown user is refused the same way.
    let text = refused(&sasl_ssl("SCRAM-SHA-256", "nobody", &tls("scram.password")), "");
    assert!(text.contains("refused the SASL credentials"), "{text}");
}

#[test]
fn a_broker_certificate_from_another_ca_stops_the_check() {
    let config = config(&[
        ("BOOTSTRAP_SERVERS", env("PALISADE_TEST_KAFKA_SASL_SSL")),
        ("TLS__CA_FILE", tls("other-ca.pem")),
        ("SASL__MECHANISM", "SCRAM-SHA-512".into()),
        ("SASL__USERNAME", "palisade".into()),
        ("SASL__PASSWORD_FILE", tls("scram.password")),
    ]);
    let password = std::fs::read_to_string(tls("scram.password")).unwrap();
    let text = refused(&config, password.trim());
    assert!(text.contains("TLS failed"), "{text}");
    assert!(text.contains("certificate verify failed"), "librdkafka's reason is kept: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_certificate_for_another_host_stops_the_check_unless_told_otherwise() {
    // The testbed broker's certificate names 127.0.0.1 only; `localhost` reaches the same listener.
    let port = env("PALISADE_TEST_KAFKA_SASL_SSL").rsplit_once(':').unwrap().1.to_owned();
    let by_name = |verify: bool| {
        config(&[
            ("BOOTSTRAP_SERVERS", format!("localhost:{port}")),
            ("TOPIC_PARTITIONS", "1".into()),
            ("TLS__CA_FILE", tls("ca.pem")),
            ("TLS__VERIFY_HOSTNAME", verify.to_string()),
            ("SASL__MECHANISM", "SCRAM-SHA-512".into()),
            ("SASL__USERNAME", "palisade".into()),
            ("SASL__PASSWORD_FILE", tls("scram.password")),
        ])
    };
    let text = refused(&by_name(true), "");
    assert!(text.contains("TLS failed") && text.contains("certificate verify failed"), "{text}");
    round_trip(&by_name(false)).await;
}

#[test]
fn a_client_certificate_the_broker_does_not_trust_stops_the_check() {
    let text = refused(&mtls("untrusted-client", "ca.pem"), "");
    assert!(text.contains("TLS"), "{text}");
    // No client certificate at all on the mutual-TLS listener.
    let anonymous = config(&[("BOOTSTRAP_SERVERS", env("PALISADE_TEST_KAFKA_MTLS")), ("TLS__CA_FILE", tls("ca.pem"))]);
    let text = refused(&anonymous, "");
    assert!(text.contains("TLS"), "{text}");
}

#[test]
fn a_property_librdkafka_refuses_stops_the_start_without_its_secret() {
    let dir = std::env::temp_dir().join(unique("properties"));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, "s3cr3t-value-0815").unwrap();
    let path = secret.to_str().unwrap();
    // A value librdkafka refuses, read from a file as a secret would be: the error names the property, not the
    // value.
    let config = config(&[
        ("BOOTSTRAP_SERVERS", env("PALISADE_TEST_KAFKA")),
        ("PROPERTIES", format!("{{ \"socket.timeout.ms\" = {{ file = \"{path}\" }} }}")),
    ]);
    let error = ClientSettings::resolve(&config).expect_err("librdkafka refuses the value");
    let text = error.to_string();
    assert!(text.contains("socket.timeout.ms"), "{text}");
    assert!(!text.contains("s3cr3t-value-0815"), "{text}");
    let unknown = palisade_runtime::config::load::<KafkaConfig>(
        None,
        vec![
            ("PALISADE__BOOTSTRAP_SERVERS".to_owned(), env("PALISADE_TEST_KAFKA")),
            ("PALISADE__PROPERTIES".to_owned(), "{ \"no.such.property\" = 1 }".to_owned()),
        ],
    )
    .unwrap();
    let text = ClientSettings::resolve(&unknown).expect_err("unknown property").to_string();
    assert!(text.contains("no.such.property"), "{text}");
}
