//! The runtime every Palisade stage stands on: the message bus (Kafka through rdkafka, or the in-process bus of
//! `palisade run`), config loading with environment overrides, the /metrics and /healthz endpoint, and shutdown.
//! This is the only crate that depends on rdkafka.

pub mod bus;
pub mod config;
pub mod kafka;
pub mod metrics;
pub mod shutdown;
pub mod trace;

pub use bus::{Bus, BusError, Delivery, Message, Subscription};
pub use config::{ConfigError, KafkaConfig, RuntimeConfig, TopicsConfig};
pub use shutdown::Shutdown;
