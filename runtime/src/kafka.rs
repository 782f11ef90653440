//! Kafka through rdkafka: an idempotent producer (acks=all) whose sends resolve on broker acknowledgement, and
//! consumers that never store an offset by themselves (`enable.auto.offset.store=false`) — a stage stores it by
//! acknowledging the delivery, after its own output was acknowledged, and the auto-committer commits only stored
//! offsets. This is what makes the pipeline at-least-once: librdkafka discards prefetched messages on close, and
//! with the default auto-store their offsets would be committed unprocessed.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::bus::{AckToken, BusError, Delivery, Message, Outgoing};
use crate::config::KafkaConfig;

pub struct KafkaBus {
    config: KafkaConfig,
    producer: FutureProducer,
}

impl KafkaBus {
    pub fn new(config: &KafkaConfig) -> Result<Self, BusError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("client.id", &config.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", config.producer_linger_ms.to_string())
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .create()
            .map_err(BusError::Client)?;
        Ok(Self { config: config.clone(), producer })
    }

    /// Creates the topics that are missing; existing topics are left as they are.
    pub async fn ensure_topics(&self, topics: &[&str]) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.config.bootstrap_servers)
            .create()
            .map_err(BusError::Client)?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| {
                NewTopic::new(t, self.config.topic_partitions, TopicReplication::Fixed(self.config.topic_replication))
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

    pub(crate) async fn publish(&self, outgoing: Outgoing<'_>) -> Result<(), BusError> {
        let mut headers = OwnedHeaders::new_with_capacity(outgoing.headers.len());
        for (key, value) in outgoing.headers {
            headers = headers.insert(Header { key, value: Some(*value) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(outgoing.topic).payload(outgoing.payload).headers(headers);
        if let Some(key) = outgoing.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_millis(u64::from(self.config.message_timeout_ms)))
            .await
            .map(|_| ())
            .map_err(|(source, _)| BusError::Kafka { topic: outgoing.topic.to_owned(), source })
    }

    pub(crate) fn subscribe(&self, topics: &[&str], group: &str) -> Result<KafkaSubscription, BusError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("client.id", &self.config.client_id)
            .set("group.id", format!("{}-{group}", self.config.group_prefix))
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "10000")
            .create()
            .map_err(BusError::Client)?;
        consumer.subscribe(topics).map_err(|source| BusError::Kafka { topic: topics.join(","), source })?;
        Ok(KafkaSubscription { consumer: Arc::new(consumer) })
    }

    /// Waits until every message sent so far is acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        use rdkafka::producer::Producer as _;
        self.producer.flush(timeout).map_err(|source| BusError::Kafka { topic: "*".into(), source })
    }
}

pub struct KafkaSubscription {
    consumer: Arc<StreamConsumer>,
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
    consumer: Arc<StreamConsumer>,
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
