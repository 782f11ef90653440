//! The bus every stage reads from and writes to. Two backends with one interface: Kafka (production, and the
//! microservice deployment) and an in-process bus (`palisade run`). A delivery is acknowledged by the stage only
//! after everything it produced from it was acknowledged downstream; on Kafka that stores the offset, which the
//! consumer commits (at-least-once).

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::kafka::{KafkaBus, KafkaSubscription};
use palisade_telemetry as telemetry;

/// Capacity of one in-process subscription; a full queue makes publishers wait (back-pressure).
pub const IN_PROCESS_QUEUE_CAPACITY: usize = 4096;

/// Header carrying the reason a message was dead-lettered.
pub const HEADER_ERROR: &str = "palisade.error";
/// Header naming the stage that dead-lettered a message.
pub const HEADER_STAGE: &str = "palisade.stage";
/// Headers locating the original message.
pub const HEADER_SOURCE_TOPIC: &str = "palisade.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "palisade.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "palisade.source.offset";
/// Set on a dead letter whose payload was cut to fit the record bound: the payload's size before.
pub const HEADER_TRUNCATED_FROM_BYTES: &str = "palisade.truncated-from-bytes";

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("Kafka error on topic `{topic}`: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka client settings: {0}; check [kafka], [kafka.tls], [kafka.sasl] and [kafka.properties]")]
    Settings(String),
    #[error("cannot connect to Kafka at {servers}: {reason}")]
    Connect { servers: String, reason: String },
    #[error("topic administration failed for `{topic}`: {reason}")]
    Admin { topic: String, reason: String },
    #[error("the in-process bus is closed")]
    Closed,
    #[error(
        "record of {bytes} bytes for `{topic}` is over the {limit}-byte bound (kafka.max_message_bytes); it is never \
         retried"
    )]
    TooLarge { topic: String, bytes: usize, limit: usize },
}

/// A message as a stage sees it, whatever the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// What to publish.
/// A record header: its name and value.
pub type Header<'a> = (&'a str, &'a [u8]);

#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
}

#[derive(Clone)]
pub enum Bus {
    InProcess(Arc<InProcessBus>),
    Kafka(Arc<KafkaBus>),
}

impl Bus {
    pub fn in_process() -> Self {
        Bus::InProcess(Arc::new(InProcessBus::default()))
    }

    /// The largest record the bus takes (key, value and headers); the in-process bus keeps Kafka's default
    /// bound so that `palisade run` meets the same limit as the deployed stages.
    pub fn max_message_bytes(&self) -> usize {
        match self {
            Bus::InProcess(_) => crate::config::DEFAULT_MAX_MESSAGE_BYTES,
            Bus::Kafka(bus) => bus.config().max_message_bytes,
        }
    }

    /// Publishes and waits until the backend acknowledged the message (Kafka: acks=all from the broker). A record
    /// over the bound is refused at once with `TooLarge`, a permanent error.
    pub async fn publish(&self, outgoing: Outgoing<'_>) -> Result<(), BusError> {
        let (bytes, limit) = (crate::kafka::outgoing_bytes(&outgoing), self.max_message_bytes());
        let result = if bytes > limit {
            Err(BusError::TooLarge { topic: outgoing.topic.to_owned(), bytes, limit })
        } else {
            match self {
                Bus::InProcess(bus) => bus.publish(outgoing).await,
                Bus::Kafka(bus) => bus.publish(outgoing).await,
            }
        };
        telemetry::MessagePublished { topic: outgoing.topic, ok: result.is_ok() }.emit();
        result
    }

    /// Subscribes `group` to `topics`. In process, every subscription sees every message published after it.
    pub fn subscribe(&self, topics: &[&str], group: &str) -> Result<Subscription, BusError> {
        self.subscribe_with(topics, group, crate::kafka::Assignment::Eager)
    }

    /// `subscribe`, with how the group's partitions move between its members (Kafka only).
    pub fn subscribe_with(
        &self,
        topics: &[&str],
        group: &str,
        assignment: crate::kafka::Assignment,
    ) -> Result<Subscription, BusError> {
        match self {
            Bus::InProcess(bus) => Ok(Subscription::InProcess(bus.subscribe(topics))),
            Bus::Kafka(bus) => Ok(Subscription::Kafka(bus.subscribe(topics, group, assignment)?)),
        }
    }

    /// A compacted table's topic read whole by this instance: on Kafka every partition from `next[partition]` (the
    /// offset after what was already read; else its first), in no group, nothing committed (its deliveries are
    /// not to be acknowledged); in process, like `subscribe`.
    pub fn table(&self, topic: &str, next: &std::collections::BTreeMap<i32, i64>) -> Result<Subscription, BusError> {
        match self {
            Bus::InProcess(bus) => Ok(Subscription::InProcess(bus.subscribe(&[topic]))),
            Bus::Kafka(bus) => Ok(Subscription::Kafka(bus.table(topic, next)?)),
        }
    }

    /// Sends `original` to the dead-letter topic with the reason, stage and origin in headers.
    pub async fn dead_letter(
        &self,
        dead_letter_topic: &str,
        stage: &str,
        original: &Message,
        reason: &str,
    ) -> Result<(), BusError> {
        let partition = original.partition.to_string();
        let offset = original.offset.to_string();
        let original_bytes = original.payload.len().to_string();
        let mut headers: Vec<(&str, &[u8])> = vec![
            (HEADER_ERROR, reason.as_bytes()),
            (HEADER_STAGE, stage.as_bytes()),
            (HEADER_SOURCE_TOPIC, original.topic.as_bytes()),
            (HEADER_SOURCE_PARTITION, partition.as_bytes()),
            (HEADER_SOURCE_OFFSET, offset.as_bytes()),
        ];
        headers.extend(original.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        // A payload too large for the bus (often the very reason it is here) goes as its head, marked as cut.
        let room = self.max_message_bytes().saturating_sub(
            crate::kafka::outgoing_bytes(&Outgoing {
                topic: dead_letter_topic,
                key: original.key.as_deref(),
                payload: &[],
                headers: &headers,
            }) + 256,
        );
        let payload = if original.payload.len() > room {
            headers.push((HEADER_TRUNCATED_FROM_BYTES, original_bytes.as_bytes()));
            &original.payload[..room]
        } else {
            &original.payload[..]
        };
        telemetry::MessageDeadLettered { stage, topic: &original.topic, reason }.emit();
        self.publish(Outgoing { topic: dead_letter_topic, key: original.key.as_deref(), payload, headers: &headers })
            .await
    }
}

pub enum Subscription {
    InProcess(mpsc::Receiver<Message>),
    Kafka(KafkaSubscription),
}

impl Subscription {
    /// A consumer on another Kafka cluster, without a producer there (see `kafka::source_subscription`).
    pub fn kafka_source(
        config: &crate::KafkaConfig,
        topics: &[&str],
        group: &str,
        timeout: std::time::Duration,
        shutdown: &crate::Shutdown,
    ) -> Result<Self, BusError> {
        let stopped = || shutdown.is_triggered();
        Ok(Subscription::Kafka(crate::kafka::source_subscription(config, topics, group, timeout, &stopped)?))
    }

    /// The next delivery; `None` when the bus closed.
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        match self {
            Subscription::InProcess(receiver) => {
                receiver.recv().await.map(|message| Ok(Delivery { message, ack: AckToken::None }))
            }
            Subscription::Kafka(subscription) => Some(subscription.next().await),
        }
    }

    /// A transactional output bound to this subscription's consumer group (Kafka only; `None` in-process, where
    /// nothing outlives the process and acknowledgements suffice).
    pub async fn transactional_output(
        &self,
        bus: &Bus,
        transactional_id: &str,
    ) -> Result<Option<crate::kafka::TransactionalOutput>, BusError> {
        match (self, bus) {
            (Subscription::Kafka(subscription), Bus::Kafka(kafka)) => {
                Ok(Some(crate::kafka::TransactionalOutput::new(kafka, transactional_id, subscription).await?))
            }
            _ => Ok(None),
        }
    }

    /// Partitions this subscription lost to another member of its group since the last call (never any in-process).
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        match self {
            Subscription::InProcess(_) => Vec::new(),
            Subscription::Kafka(subscription) => subscription.take_revoked(),
        }
    }

    /// Commits what was acknowledged; call on shutdown after the last ack.
    pub fn close(self) -> Result<(), BusError> {
        match self {
            Subscription::InProcess(_) => Ok(()),
            Subscription::Kafka(subscription) => subscription.close(),
        }
    }
}

pub(crate) enum AckToken {
    None,
    Kafka(crate::kafka::KafkaAck),
}

/// One message handed to a stage, with the means to acknowledge it.
pub struct Delivery {
    pub message: Message,
    pub(crate) ack: AckToken,
}

impl Delivery {
    /// A message that came from no subscription (a record a stage built and could not send): nothing to
    /// acknowledge.
    pub fn unacknowledged(message: Message) -> Self {
        Self { message, ack: AckToken::None }
    }

    /// Marks the message processed; its offset becomes committable.
    pub fn ack(self) -> Result<(), BusError> {
        match self.ack {
            AckToken::None => Ok(()),
            AckToken::Kafka(ack) => ack.store(),
        }
    }
}

/// Topic name → the senders of every subscription to it.
#[derive(Default)]
pub struct InProcessBus {
    subscribers: DashMap<String, Vec<mpsc::Sender<Message>>>,
    offsets: DashMap<String, i64>,
}

impl InProcessBus {
    fn subscribe(&self, topics: &[&str]) -> mpsc::Receiver<Message> {
        let (sender, receiver) = mpsc::channel(IN_PROCESS_QUEUE_CAPACITY);
        for topic in topics {
            self.subscribers.entry((*topic).to_owned()).or_default().push(sender.clone());
        }
        receiver
    }

    async fn publish(&self, outgoing: Outgoing<'_>) -> Result<(), BusError> {
        let offset = {
            let mut next = self.offsets.entry(outgoing.topic.to_owned()).or_insert(0);
            *next += 1;
            *next - 1
        };
        let senders: Vec<mpsc::Sender<Message>> =
            self.subscribers.get(outgoing.topic).map(|s| s.clone()).unwrap_or_default();
        if senders.is_empty() {
            telemetry::MessageUnrouted { topic: outgoing.topic }.emit();
            return Ok(());
        }
        let message = Message {
            topic: outgoing.topic.to_owned(),
            partition: 0,
            offset,
            key: outgoing.key.map(<[u8]>::to_vec),
            payload: outgoing.payload.to_vec(),
            headers: outgoing.headers.iter().map(|(n, v)| ((*n).to_owned(), v.to_vec())).collect(),
            timestamp_ms: None,
        };
        for sender in senders {
            sender.send(message.clone()).await.map_err(|_| BusError::Closed)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_bus_delivers_to_every_subscription_in_order() {
        let bus = Bus::in_process();
        let mut first = bus.subscribe(&["t"], "a").unwrap();
        let mut second = bus.subscribe(&["t", "u"], "b").unwrap();
        for index in 0..3u8 {
            bus.publish(Outgoing { topic: "t", key: Some(b"k"), payload: &[index], headers: &[] }).await.unwrap();
        }
        bus.publish(Outgoing { topic: "u", key: None, payload: b"u", headers: &[("h", b"v")] }).await.unwrap();
        for index in 0..3u8 {
            let delivery = first.next().await.unwrap().unwrap();
            assert_eq!(delivery.message.payload, vec![index]);
            assert_eq!(delivery.message.offset, i64::from(index));
            delivery.ack().unwrap();
            assert_eq!(second.next().await.unwrap().unwrap().message.payload, vec![index]);
        }
        let other = second.next().await.unwrap().unwrap();
        assert_eq!(other.message.header("h"), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn records_over_the_bound_are_refused_and_dead_letters_are_cut_to_fit() {
        let bus = Bus::in_process();
        let mut out = bus.subscribe(&["out"], "x").unwrap();
        let mut dead = bus.subscribe(&["dlq"], "x").unwrap();
        let big = vec![b'x'; crate::config::DEFAULT_MAX_MESSAGE_BYTES + 1];
        let refused = bus.publish(Outgoing { topic: "out", key: None, payload: &big, headers: &[] }).await;
        assert!(matches!(refused, Err(BusError::TooLarge { bytes, .. }) if bytes == big.len()), "{refused:?}");
        bus.publish(Outgoing { topic: "out", key: None, payload: b"small", headers: &[] }).await.unwrap();
        assert_eq!(out.next().await.unwrap().unwrap().message.payload, b"small", "the big one was never sent");
        let original = Message {
            topic: "in".into(),
            partition: 0,
            offset: 1,
            key: Some(b"k".to_vec()),
            payload: big.clone(),
            headers: vec![],
            timestamp_ms: None,
        };
        bus.dead_letter("dlq", "audit", &original, "too large").await.unwrap();
        let got = dead.next().await.unwrap().unwrap().message;
        assert!(got.payload.len() < big.len() && big.starts_with(&got.payload));
        assert_eq!(got.header(HEADER_TRUNCATED_FROM_BYTES), Some(big.len().to_string().as_bytes()));
    }

    #[tokio::test]
    async fn dead_letter_keeps_payload_and_says_why() {
        let bus = Bus::in_process();
        let mut dead = bus.subscribe(&["dlq"], "x").unwrap();
        let original = Message {
            topic: "in".into(),
            partition: 2,
            offset: 7,
            key: Some(b"key".to_vec()),
            payload: b"not avro".to_vec(),
            headers: vec![],
            timestamp_ms: None,
        };
        bus.dead_letter("dlq", "detect", &original, "bad magic").await.unwrap();
        let got = dead.next().await.unwrap().unwrap().message;
        assert_eq!(got.payload, b"not avro");
        assert_eq!(got.header(HEADER_ERROR), Some(&b"bad magic"[..]));
        assert_eq!(got.header(HEADER_SOURCE_OFFSET), Some(&b"7"[..]));
        assert_eq!(got.header(HEADER_STAGE), Some(&b"detect"[..]));
    }

    #[tokio::test]
    async fn a_full_in_process_queue_applies_back_pressure() {
        let bus = Bus::in_process();
        let _slow = bus.subscribe(&["t"], "slow").unwrap();
        for _ in 0..IN_PROCESS_QUEUE_CAPACITY {
            bus.publish(Outgoing { topic: "t", key: None, payload: b"x", headers: &[] }).await.unwrap();
        }
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            bus.publish(Outgoing { topic: "t", key: None, payload: b"x", headers: &[] }),
        )
        .await;
        assert!(blocked.is_err(), "publish must wait while the subscriber's queue is full");
    }
}
