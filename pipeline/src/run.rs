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
    for component in ["audit", STAGE_DETECT, STAGE_ENRICH, STAGE_SINK] {
        palisade_telemetry::ComponentExpected { component }.emit();
    }
    let bus = build_bus(&config).await?;
    start_metrics(&config, &shutdown).await?;
    let engine = Arc::new(Engine::new(&config.detect)?);
    let enricher = Arc::new(Enricher::new(&config.cluster, &config.enrich, &config.detect)?);
    let outputs = Outputs::build(&config.sink).await?;

    // Subscribe every stage before any source can publish.
    let detect_subscription = stages::detect::subscribe(&bus, &topics, &config.detect)?;
    let cluster_state = stages::cluster_state::subscribe(&bus, &topics);
    let enrich_subscription = stages::enrich::subscribe(&bus, &topics)?;
    let sink_loops = stages::sink::subscribe(&bus, &topics, outputs)?;
    let (detect_stop, enrich_stop, sink_stop, sources_stop) =
        (Shutdown::new(), Shutdown::new(), Shutdown::new(), Shutdown::new());
    let detect = tokio::spawn(stages::detect::run_with(
        bus.clone(),
        (detect_subscription, cluster_state),
        topics.clone(),
        engine,
        stages::detect::StateStore::from_config(&bus, config.kafka.as_ref(), &config.detect),
        detect_stop.clone(),
    ));
    let (pod_lookup, pod_watch) = stages::enrich::start_pod_lookup(&bus, &config, &enrich_stop).await?.unzip();
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
                palisade_telemetry::ComponentExpected { component: STAGE_COLLECT }.emit();
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

    // A stage that ends before shutdown (an alerts file that cannot be written, a Kafka transaction that cannot
    // commit) ends the process with its error: running on without it would look alive and drop what it should
    // have handled. Every stage is then told to stop at once (the chain behind the dead one cannot drain, and a
    // stage retrying sends to it gives up only once told), not in the drain order of a normal shutdown.
    let mut stages: Vec<(&'static str, Option<StageTask>)> =
        [(STAGE_DETECT, detect), (STAGE_ENRICH, enrich), (STAGE_SINK, sink)]
            .into_iter()
            .chain(collect_task.map(|task| (STAGE_COLLECT, task)))
            .map(|(name, task)| (name, Some(task)))
            .collect();
    let ended = tokio::select! {
        () = shutdown.wait() => None,
        (ended, index, _) = futures::future::select_all(stages.iter_mut().map(|(_, task)| {
            Box::pin(async move { task.as_mut().expect("every stage task is there until one ends").await })
        })) => Some((index, ended)),
    };
    let mut first_error = None;
    if let Some((index, result)) = ended {
        let stage = stages[index].0;
        stages[index].1 = None;
        let error = stage_error(stage, result).unwrap_or(PipelineError::StageEnded { stage });
        tracing::error!(stage, %error, "a stage ended before shutdown; stopping the others");
        first_error = Some(error);
        for stop in [&sources_stop, &detect_stop, &enrich_stop, &sink_stop] {
            stop.trigger();
        }
    }
    let mut take = |name: &str| stages.iter_mut().find(|(stage, _)| *stage == name).and_then(|(_, task)| task.take());
    let (detect, enrich, sink, collect_task) =
        (take(STAGE_DETECT), take(STAGE_ENRICH), take(STAGE_SINK), take(STAGE_COLLECT));
    let mut finish = |stage: &'static str, result| {
        if let Some(error) = stage_error(stage, result) {
            tracing::error!(stage, %error, "stage failed while stopping");
            first_error.get_or_insert(error);
        }
    };
    sources_stop.trigger();
    if let Some(collector) = collector {
        tokio::task::spawn_blocking(move || collector.stop()).await.ok();
    }
    if let Some(task) = collect_task {
        finish(STAGE_COLLECT, task.await);
    }
    audit.finished().await;
    detect_stop.trigger();
    if let Some(task) = detect {
        finish(STAGE_DETECT, task.await);
    }
    enrich_stop.trigger();
    if let Some(task) = enrich {
        finish(STAGE_ENRICH, task.await);
    }
    drop(pod_watch);
    sink_stop.trigger();
    if let Some(task) = sink {
        finish(STAGE_SINK, task.await);
    }
    if let palisade_runtime::Bus::Kafka(kafka) = &bus
        && let Err(error) = kafka.flush(std::time::Duration::from_secs(10))
    {
        first_error.get_or_insert(error.into());
    }
    first_error.map_or(Ok(()), Err)
}

type StageTask = tokio::task::JoinHandle<Result<(), PipelineError>>;

/// A stage task's failure, if it failed: its error, or its panic as an error naming the stage.
fn stage_error(
    stage: &'static str,
    result: Result<Result<(), PipelineError>, tokio::task::JoinError>,
) -> Option<PipelineError> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error),
        Err(panic) => {
            tracing::error!(stage, %panic, "stage task panicked");
            Some(PipelineError::StageEnded { stage })
        }
    }
}

const STAGE_DETECT: &str = "detect";
const STAGE_ENRICH: &str = "enrich";
const STAGE_SINK: &str = "sink";
const STAGE_COLLECT: &str = "collect";
