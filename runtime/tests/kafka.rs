//! The Kafka bus against a real broker (`scripts/testbed up`): at-least-once (an unacknowledged message is
//! delivered again to the group, an acknowledged one is not), and dead-lettering keeps the payload and says why.

mod common;

use common::{next, unique};
use palisade_runtime::bus::{HEADER_ERROR, HEADER_SOURCE_OFFSET, HEADER_SOURCE_TOPIC, HEADER_STAGE, Outgoing};
use palisade_runtime::kafka::KafkaBus;
use palisade_runtime::{Bus, KafkaConfig};

fn bus(group_prefix: &str) -> (Bus, KafkaBus) {
    bus_with(group_prefix, &[])
}

fn bus_with(group_prefix: &str, extra: &[(&str, &str)]) -> (Bus, KafkaBus) {
    let servers = std::env::var("PALISADE_TEST_KAFKA")
        .expect("PALISADE_TEST_KAFKA is not set: run `scripts/testbed up` and `eval \"$(scripts/testbed env)\"`");
    let config: KafkaConfig = palisade_runtime::config::load::<KafkaConfig>(
        None,
        vec![
            ("PALISADE__BOOTSTRAP_SERVERS".to_owned(), servers),
            ("PALISADE__GROUP_PREFIX".to_owned(), group_prefix.to_owned()),
            ("PALISADE__TOPIC_PARTITIONS".to_owned(), "1".to_owned()),
        ]
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (format!("PALISADE__{k}"), v.to_string())))
        .collect::<Vec<_>>(),
    )
    .unwrap();
    (Bus::Kafka(std::sync::Arc::new(KafkaBus::new(&config).unwrap())), KafkaBus::new(&config).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn unacknowledged_messages_are_delivered_again_and_acknowledged_ones_are_not() {
    let topic = unique("redelivery");
    let group = unique("group");
    let (bus, admin) = bus(&group);
    admin.ensure_topics(&[&topic]).await.unwrap();
    for index in 0..4u8 {
        bus.publish(Outgoing { topic: &topic, key: Some(b"k"), payload: &[index], headers: &[] }).await.unwrap();
    }

    let mut first = bus.subscribe(&[&topic], "stage").unwrap();
    let a = next(&mut first).await;
    let b = next(&mut first).await;
    assert_eq!((a.message.payload[0], b.message.payload[0]), (0, 1));
    a.ack().unwrap();
    b.ack().unwrap();
    // Read the third without acknowledging it, as a stage would that crashed mid-message.
    let c = next(&mut first).await;
    assert_eq!(c.message.payload[0], 2);
    drop(c);
    first.close().unwrap();

    let mut second = bus.subscribe(&[&topic], "stage").unwrap();
    let again = next(&mut second).await;
    assert_eq!(again.message.payload[0], 2, "delivery resumes at the first unacknowledged message");
    assert_eq!(next(&mut second).await.message.payload[0], 3);
    second.close().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_keep_the_payload_and_carry_the_reason_in_headers() {
    let source = unique("source");
    let dead = unique("dead");
    let (bus, admin) = bus(&unique("dlq"));
    admin.ensure_topics(&[&source, &dead]).await.unwrap();
    bus.publish(Outgoing { topic: &source, key: Some(b"node-1/host"), payload: b"\x00garbage", headers: &[] })
        .await
        .unwrap();
    let mut input = bus.subscribe(&[&source], "detect").unwrap();
    let delivery = next(&mut input).await;
    bus.dead_letter(&dead, "detect", &delivery.message, "NodeEvent: not Avro single-object encoding").await.unwrap();
    delivery.ack().unwrap();
    input.close().unwrap();

    let mut dead_letters = bus.subscribe(&[&dead], "reader").unwrap();
    let got = next(&mut dead_letters).await.message;
    assert_eq!(got.payload, b"\x00garbage");
    assert_eq!(got.key.as_deref(), Some(&b"node-1/host"[..]));
    assert_eq!(got.header(HEADER_ERROR), Some(&b"NodeEvent: not Avro single-object encoding"[..]));
    assert_eq!(got.header(HEADER_STAGE), Some(&b"detect"[..]));
    assert_eq!(got.header(HEADER_SOURCE_TOPIC), Some(source.as_bytes()));
    assert_eq!(got.header(HEADER_SOURCE_OFFSET), Some(&b"0"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_broker_refuses_for_its_size_is_a_permanent_too_large_error() {
    use palisade_runtime::BusError;
    let topic = unique("size");
    // Created with a small bound, written through a client that allows more: the broker is the one to refuse.
    let (small_bus, small) = bus_with(&unique("group"), &[("MAX_MESSAGE_BYTES", "2000")]);
    small.ensure_topics(&[&topic]).await.unwrap();
    let (large, _) = bus_with(&unique("group"), &[("MAX_MESSAGE_BYTES", "200000")]);
    // Incompressible bytes (the producer compresses with lz4).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let payload: Vec<u8> = (0..50_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let refused = large.publish(Outgoing { topic: &topic, key: None, payload: &payload, headers: &[] }).await;
    assert!(matches!(refused, Err(BusError::TooLarge { .. })), "{refused:?}");
    // The client's own bound refuses before sending.
    let refused = small_bus.publish(Outgoing { topic: &topic, key: None, payload: &payload, headers: &[] }).await;
    assert!(matches!(refused, Err(BusError::TooLarge { limit: 2000, .. })), "{refused:?}");
    large.publish(Outgoing { topic: &topic, key: None, payload: b"small", headers: &[] }).await.unwrap();
}
