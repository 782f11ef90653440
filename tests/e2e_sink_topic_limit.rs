//! The alerts topic was created (by someone else) with a smaller `max.message.bytes` than the sink's bound: the
//! broker refuses the alert inside the sink's transaction. The sink must not retry that batch for ever: its alerts
//! go to the dead-letter topic with the reason, and the alerts after it still reach the topic. Real Kafka.

mod common;

use std::time::Duration;

use palisade_schemas::{Alert, Codec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[test]
fn an_alert_the_broker_refuses_for_its_size_is_dead_lettered_and_the_sink_goes_on() {
    let mut stack = common::Stack::new("topiclimit");
    let alerts_topic = stack.topic("alerts");
    let kafka = common::env("PALISADE_TEST_KAFKA");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &kafka).create().unwrap();
    let small = NewTopic::new(&alerts_topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "4000");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let created = runtime.block_on(admin.create_topics(&[small], &AdminOptions::new())).unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    stack.start(&["sink"]);

    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/alert.v2.json")).unwrap();
    let template: Alert = serde_json::from_str(&text).unwrap();
    let codec = Codec::<Alert>::new().unwrap();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &kafka).create().unwrap();
    let send = |id: &str, evidence_bytes: usize| {
        let mut alert = template.clone();
        alert.id = id.to_owned();
        // Incompressible (the producer compresses with lz4, and the broker's limit is on the compressed batch).
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ evidence_bytes as u64;
        let noise: String = (0..evidence_bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect();
        alert.evidence = vec![noise];
        let payload = codec.encode(&alert).unwrap();
        producer.send(BaseRecord::to(&stack.topic("enriched")).key(id).payload(&payload)).map_err(|(e, _)| e).unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    let (big, small_one) = (format!("{}-big", stack.run), format!("{}-small", stack.run));
    send(&big, 20_000);
    let dead = common::read_dead_letters(&stack.topic("dead_letter"), 1, Duration::from_secs(60));
    assert_eq!(dead.len(), 1, "the refused alert is dead-lettered:\n{}", stack.log("sink"));
    assert_eq!(codec.decode(&dead[0].0).unwrap().id, big);
    assert!(dead[0].1.contains("alerts transaction refused"), "{}", dead[0].1);
    send(&small_one, 10);
    let after = common::wait_for_alert(&alerts_topic, Duration::from_secs(60), |a| a["id"] == small_one.as_str());
    assert!(after.is_some(), "the next alert is written:\n{}", stack.log("sink"));
}
