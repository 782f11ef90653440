//! The runtime every Palisade stage stands on: the message bus (Kafka through rdkafka, or the in-process bus of
//! `palisade run`), config loading with environment overrides, tracing and Prometheus metrics, and shutdown.
//! This is the only crate that depends on rdkafka.

pub mod bus;
pub mod config;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

pub use bus::{Bus, BusError, Delivery, Message, Subscription};
pub use config::{ConfigError, KafkaConfig, RuntimeConfig, TopicsConfig};
pub use shutdown::Shutdown;
