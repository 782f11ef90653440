//! One stage as a service against Kafka: what the microservice deployment runs (`palisade audit`, `detect`,
//! `enrich`, `sink`, `collect`).

use std::sync::Arc;

use palisade_audit::AuditSources;
use palisade_collect::Collector;
use palisade_detect::Engine;
use palisade_enrich::Enricher;
use palisade_runtime::kafka::KafkaBus;
use palisade_runtime::{Bus, Shutdown};

use crate::PipelineError;
use crate::config::PalisadeConfig;
use crate::stages::{self, sink::Outputs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Audit,
    Collect,
    Detect,
    Enrich,
    Sink,
}

impl Stage {
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Audit => "audit",
            Stage::Collect => "collect",
            Stage::Detect => "detect",
            Stage::Enrich => "enrich",
            Stage::Sink => "sink",
        }
    }
}

/// How long a stage waits at start-up for a broker to answer (the topic creation that follows waits as long).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Kafka when configured (checked by connecting, then creating missing topics if asked), else the in-process bus.
pub async fn build_bus(config: &PalisadeConfig) -> Result<Bus, PipelineError> {
    match &config.kafka {
        Some(kafka) => {
            let (version, features) = palisade_runtime::kafka::client_version();
            tracing::info!(
                librdkafka = %version,
                features = %features,
                security_protocol = kafka.security_protocol(),
                sasl_mechanism = kafka.sasl.as_ref().map(|sasl| sasl.mechanism.name()),
                servers = %kafka.bootstrap_servers,
                "kafka client"
            );
            let bus = Arc::new(KafkaBus::new(kafka)?);
            let check = Arc::clone(&bus);
            tokio::task::spawn_blocking(move || check.check_connection(CONNECT_TIMEOUT))
                .await
                .expect("the connection check does not panic")?;
            if kafka.create_topics {
                // The compacted ones first: `ensure_topics` would create them with the default (delete) policy.
                bus.ensure_compacted_topics(&[&config.topics.detect_changelog, &config.topics.cluster_state]).await?;
                let mut topics = config.topics.all().to_vec();
                topics.extend(config.sink.ocsf_topic.as_deref());
                bus.ensure_topics(&topics).await?;
            }
            Ok(Bus::Kafka(bus))
        }
        None => Ok(Bus::in_process()),
    }
}

pub async fn start_metrics(config: &PalisadeConfig, shutdown: &Shutdown) -> Result<(), PipelineError> {
    if let Some(addr) = &config.metrics_listen_addr {
        let addr = addr.parse().map_err(|_| {
            PipelineError::Config(palisade_runtime::ConfigError::Value {
                field: "metrics_listen_addr",
                reason: format!("`{addr}` is not ip:port"),
            })
        })?;
        palisade_runtime::metrics::serve(addr, shutdown.clone()).await.map_err(PipelineError::Metrics)?;
    }
    Ok(())
}

pub async fn serve(stage: Stage, config: PalisadeConfig, shutdown: Shutdown) -> Result<(), PipelineError> {
    if config.kafka.is_none() {
        return Err(PipelineError::KafkaRequired { stage: stage.name() });
    }
    // Not ready (`/readyz`) until the stage runs: a collector whose programs are not attached yet, a detector
    // still restoring its checkpoint file.
    palisade_telemetry::ComponentExpected { component: stage.name() }.emit();
    let bus = build_bus(&config).await?;
    start_metrics(&config, &shutdown).await?;
    let topics = config.topics.clone();
    match stage {
        Stage::Detect => {
            let subscription = stages::detect::subscribe(&bus, &topics, &config.detect)?;
            let engine = Arc::new(Engine::new(&config.detect)?);
            let store = stages::detect::StateStore::from_config(&bus, config.kafka.as_ref(), &config.detect);
            let table = stages::cluster_state::subscribe(&bus, &topics);
            stages::detect::run_with(bus.clone(), (subscription, table), topics, engine, store, shutdown).await?;
        }
        Stage::Enrich => {
            let subscription = stages::enrich::subscribe(&bus, &topics)?;
            let enricher = Arc::new(Enricher::new(&config.cluster, &config.enrich, &config.detect)?);
            let (lookup, _watch) = stages::enrich::start_pod_lookup(&bus, &config, &shutdown).await?.unzip();
            let settings = stages::enrich::EnrichSettings {
                dedup_window_secs: config.enrich.dedup_window_secs,
                dedup_flush_secs: config.enrich.dedup_flush_secs,
                lookup,
            };
            stages::enrich::run(bus.clone(), subscription, topics, enricher, settings, shutdown).await?;
        }
        Stage::Sink => {
            let outputs = Outputs::build(&config.sink).await?;
            let loops = stages::sink::subscribe(&bus, &topics, outputs)?;
            stages::sink::run(bus.clone(), loops, topics, shutdown).await?;
        }
        Stage::Audit => {
            let audit =
                AuditSources::start(&config.audit, &bus, config.kafka.as_ref(), &config.cluster, &topics, &shutdown)
                    .await?;
            audit.finished().await;
        }
        Stage::Collect => {
            let (collector, events) = Collector::start(&config.collect, &config.node_name())?;
            let stats = Arc::clone(&collector.stats);
            let result =
                stages::collect::run(bus.clone(), topics, events, stats, config.collect.cri_resolver(), shutdown).await;
            tokio::task::spawn_blocking(move || collector.stop()).await.ok();
            result?;
        }
    }
    if let Bus::Kafka(kafka) = &bus {
        kafka.flush(std::time::Duration::from_secs(10))?;
    }
    Ok(())
}
