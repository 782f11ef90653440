//! `palisade run`: every stage in one process. The in-process bus unless Kafka is configured; the audit webhook;
//! eBPF collection when possible (otherwise one line says why, and the rest runs); alerts printed for a person
//! and appended to the alerts file. Shutdown stops the sources first, then lets each stage drain its queue
//! before the next one stops, so nothing accepted is lost.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use palisade_audit::AuditSources;
use palisade_collect::Collector;
use palisade_detect::Engine;
use palisade_enrich::Enricher;
use palisade_runtime::Shutdown;

use crate::PipelineError;
use crate::config::PalisadeConfig;
use crate::serve::{build_bus, start_metrics};
use crate::stages::{self, sink::Outputs};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where alerts are appended as JSON lines.
    pub alerts_file: PathBuf,
    /// Print one line per alert on standard output.
    pub print_alerts: bool,
}

/// `palisade run` with no webhook credential configured: a random token in a new private directory (0700, a name
/// nobody could have created first), so the webhook is never open by accident. The path is printed; the token is
/// not.
fn generate_webhook_token() -> Result<PathBuf, PipelineError> {
    let failed =
        |path: &std::path::Path, source| PipelineError::WebhookToken { path: path.display().to_string(), source };
    let dir = crate::private_dir::create("palisade-run").map_err(|e| failed(&std::env::temp_dir(), e))?;
    let path = dir.join("webhook-token");
    let token = crate::private_dir::random_hex(32).map_err(|e| failed(std::path::Path::new("/dev/urandom"), e))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(token.as_bytes()))
        .map_err(|e| failed(&path, e))?;
    Ok(path)
}

pub async fn run(mut config: PalisadeConfig, options: RunOptions, shutdown: Shutdown) -> Result<(), PipelineError> {
    let audit = &config.audit;
    if audit.token_file.is_none() && audit.client_ca_path.is_none() && !audit.allow_unauthenticated {
        let path = generate_webhook_token()?;
        let _ = writeln!(
            std::io::stderr(),
            "palisade: the audit webhook's bearer token is in {} (set audit.token_file to choose it)",
            path.display()
        );
        config.audit.token_file = Some(path);
    }
    config.sink.alerts_file = Some(options.alerts_file);
    config.sink.print_alerts = options.print_alerts;
    let topics = config.topics.clone();
    for component in ["audit", "detect", "enrich", "sink"] {
        palisade_telemetry::ComponentExpected { component }.emit();
    }
    let bus = build_bus(&config).await?;
    start_metrics(&config, &shutdown).await?;
    let engine = Arc::new(Engine::new(&config.detect)?);
    let enricher = Arc::new(Enricher::new(&config.cluster, &config.enrich, &config.detect)?);
    let outputs = Outputs::build(&config.sink).await?;

    // Subscribe every stage before any source can publish.
    let detect_subscription = stages::detect::subscribe(&bus, &topics, &config.detect)?;
    let enrich_subscription = stages::enrich::subscribe(&bus, &topics)?;
    let sink_loops = stages::sink::subscribe(&bus, &topics, outputs)?;
    let (detect_stop, enrich_stop, sink_stop, sources_stop) =
        (Shutdown::new(), Shutdown::new(), Shutdown::new(), Shutdown::new());
    let detect = tokio::spawn(stages::detect::run_with(
        bus.clone(),
        detect_subscription,
        topics.clone(),
        engine,
        stages::detect::StateStore::from_config(&bus, config.kafka.as_ref(), &config.detect),
        detect_stop.clone(),
    ));
    let (pod_lookup, pod_watch) = stages::enrich::start_pod_lookup(&config.enrich)?.unzip();
    let enrich = tokio::spawn(stages::enrich::run(
        bus.clone(),
        enrich_subscription,
        topics.clone(),
        enricher,
        stages::enrich::EnrichSettings {
            dedup_window_secs: config.enrich.dedup_window_secs,
            dedup_flush_secs: config.enrich.dedup_flush_secs,
            lookup: pod_lookup,
        },
        enrich_stop.clone(),
    ));
    let sink = tokio::spawn(stages::sink::run(bus.clone(), sink_loops, topics.clone(), sink_stop.clone()));

    let audit =
        AuditSources::start(&config.audit, &bus, config.kafka.as_ref(), &config.cluster, &topics, &sources_stop)
            .await?;

    let mut collector = None;
    let mut collect_task = None;
    if config.collect.enabled {
        match palisade_collect::loader::unavailable_reason() {
            Some(reason) => {
                let _ = writeln!(std::io::stderr(), "palisade: node collection is off: {reason}");
            }
            None => {
                palisade_telemetry::ComponentExpected { component: "collect" }.emit();
                let (started, events) = Collector::start(&config.collect, &config.node_name())?;
                collect_task = Some(tokio::spawn(stages::collect::run(
                    bus.clone(),
                    topics.clone(),
                    events,
                    Arc::clone(&started.stats),
                    config.collect.cri_resolver(),
                    sources_stop.clone(),
                )));
                collector = Some(started);
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "palisade: running (audit webhook https{}://{}{}, node collection {}, alerts to {})",
        if config.audit.tls_disabled { "-disabled" } else { "" },
        audit.webhook.local_addr,
        palisade_audit::webhook::WEBHOOK_PATH,
        if collector.is_some() { "on" } else { "off" },
        config.sink.alerts_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
    );

    shutdown.wait().await;
    sources_stop.trigger();
    if let Some(collector) = collector {
        tokio::task::spawn_blocking(move || collector.stop()).await.ok();
    }
    if let Some(task) = collect_task {
        task.await.ok().transpose()?;
    }
    audit.finished().await;
    detect_stop.trigger();
    detect.await.ok().transpose()?;
    enrich_stop.trigger();
    enrich.await.ok().transpose()?;
    drop(pod_watch);
    sink_stop.trigger();
    sink.await.ok().transpose()?;
    if let palisade_runtime::Bus::Kafka(kafka) = &bus {
        kafka.flush(std::time::Duration::from_secs(10))?;
    }
    Ok(())
}
