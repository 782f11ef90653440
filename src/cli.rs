//! Command-line interface. Every subcommand maps to one library call.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use palisade_pipeline::PalisadeConfig;
use palisade_pipeline::run::RunOptions;
use palisade_pipeline::scan::ScanInputs;
use palisade_pipeline::serve::Stage;
use palisade_runtime::Shutdown;
use palisade_runtime::kafka::RangeBound;

#[derive(Debug, Parser)]
#[command(name = "palisade", version, about = "Kubernetes and container threat detection over Kafka")]
struct Cli {
    /// Configuration file (TOML). `PALISADE__SECTION__KEY=value` environment variables override it.
    #[arg(long, short, global = true, env = "PALISADE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every stage in one process (in-process bus unless Kafka is configured), with eBPF collection when root.
    Run {
        /// Append alerts as JSON lines to this file.
        #[arg(long, default_value = "./palisade-alerts.jsonl")]
        alerts_file: PathBuf,
        /// Do not print alerts on standard output.
        #[arg(long)]
        quiet: bool,
    },
    /// The node collector (DaemonSet): eBPF events to Kafka.
    Collect,
    /// The audit webhook: kube-apiserver audit batches to Kafka.
    Audit,
    /// The detectors: events from Kafka to detections.
    Detect,
    /// Enrichment: detections to alerts.
    Enrich,
    /// Alert outputs: the alerts topic and Elasticsearch/OpenSearch.
    Sink,
    /// Offline detection over recorded events (JSON lines; `-` is standard input).
    Scan {
        /// Kubernetes audit events (Event or EventList per line).
        #[arg(long)]
        audit: Option<PathBuf>,
        /// Node events (NodeEvent JSON per line).
        #[arg(long)]
        node: Option<PathBuf>,
        /// Cloud activity records (CloudActivity JSON per line).
        #[arg(long)]
        cloud: Option<PathBuf>,
        /// Write alerts here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Re-run a range of an input topic through a candidate configuration and print how its alerts differ from
    /// the production configuration's (new, gone, suppressed, changed severity); or, given the alerts topic,
    /// preview the candidate's suppression rules against the alerts already raised. Writes nothing to Kafka.
    /// Exit code: 0 when nothing differs, 1 when something does.
    Replay {
        /// The topic: the node events, audit events, cloud activity or alerts topic of the production
        /// configuration.
        #[arg(long)]
        topic: String,
        /// Candidate configuration (TOML); its detect and enrich sections are what is tried.
        #[arg(long)]
        candidate: PathBuf,
        /// First offset, on every partition (default: the first kept).
        #[arg(long, conflicts_with = "from_time")]
        from_offset: Option<i64>,
        /// Offset to stop before, on every partition (default: the end when the replay starts).
        #[arg(long, conflicts_with = "to_time")]
        to_offset: Option<i64>,
        /// First record time, RFC 3339 (e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        from_time: Option<String>,
        /// Last record time, RFC 3339.
        #[arg(long)]
        to_time: Option<String>,
        /// Print the diff as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the alert types.
    Catalogue {
        /// One JSON object per line instead of a table.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// The Markdown reference (`docs/alerts.md`).
        #[arg(long)]
        markdown: bool,
    },
    /// Run the harmless test trigger; a running collector raises K8S.NODE_EICAR.
    TestAlert,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("palisade: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let load = || PalisadeConfig::load(cli.config.as_deref()).context("configuration");
    match cli.command {
        Command::Catalogue { json, markdown } => {
            let text = if markdown { palisade_detect::docs::markdown() } else { palisade_detect::docs::render(json) };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::TestAlert => {
            let ran = palisade_pipeline::test_alert::fire()?;
            println!("ran {} (harmless); a running collector raises K8S.NODE_EICAR", ran.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan { audit, node, cloud, out } => {
            let config = load()?;
            if audit.is_none() && node.is_none() && cloud.is_none() {
                anyhow::bail!("scan needs at least one of --audit, --node, --cloud");
            }
            let inputs = ScanInputs { audit, node, cloud };
            let mut output: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            let report = palisade_pipeline::scan::scan(&config, &inputs, &mut output, &mut std::io::stderr())?;
            eprintln!(
                "palisade: scanned {} events, {} alerts ({} suppressed, not written), {} bad lines",
                report.events, report.alerts, report.suppressed, report.bad_lines
            );
            Ok(if report.bad_lines > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Replay { topic, candidate, from_offset, to_offset, from_time, to_time, json } => {
            let production = load()?;
            let candidate_config = PalisadeConfig::load(Some(&candidate)).context("candidate configuration")?;
            let time = |text: Option<String>| -> anyhow::Result<Option<RangeBound>> {
                text.map(|t| {
                    palisade_schemas::k8s_audit::parse_rfc3339_ms(&t)
                        .map(RangeBound::TimeMs)
                        .with_context(|| format!("{t} is not an RFC 3339 time"))
                })
                .transpose()
            };
            let range = palisade_pipeline::replay::ReplayRange {
                topic,
                from: from_offset.map(RangeBound::Offset).or(time(from_time)?),
                to: to_offset.map(RangeBound::Offset).or(time(to_time)?),
            };
            let report = replay_with_progress(&production, &candidate_config, &range)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(if report.changed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Run { alerts_file, quiet } => {
            let config = load()?;
            let export = start_logging(&config, "run")?;
            let options = RunOptions { alerts_file, print_alerts: !quiet };
            let ran = runtime()?.block_on(async {
                let shutdown = Shutdown::new();
                shutdown.listen_for_signals();
                palisade_pipeline::run::run(config, options, shutdown).await
            });
            if let Some(export) = export {
                export.shutdown();
            }
            ran?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Collect | Command::Audit | Command::Detect | Command::Enrich | Command::Sink => {
            let stage = match cli.command {
                Command::Collect => Stage::Collect,
                Command::Audit => Stage::Audit,
                Command::Detect => Stage::Detect,
                Command::Enrich => Stage::Enrich,
                _ => Stage::Sink,
            };
            let config = load()?;
            let export = start_logging(&config, stage.name())?;
            let served = runtime()?.block_on(async {
                let shutdown = Shutdown::new();
                shutdown.listen_for_signals();
                palisade_pipeline::serve::serve(stage, config, shutdown).await
            });
            if let Some(export) = export {
                export.shutdown();
            }
            served?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Installs the log output and, with `[telemetry.otlp]`, the trace export beside it (before the async runtime
/// starts: the exporter's client blocks); `process` names this process in the exported spans.
fn start_logging(config: &PalisadeConfig, process: &str) -> anyhow::Result<Option<palisade_pipeline::otlp::Otlp>> {
    let Some(otlp) = &config.telemetry.otlp else {
        palisade_telemetry::init_logging(config.log_json);
        return Ok(None);
    };
    let (export, layer) = palisade_pipeline::otlp::install(otlp, process).context("[telemetry.otlp]")?;
    palisade_telemetry::init_logging_with(config.log_json, Some(layer));
    tracing::info!(endpoint = %otlp.endpoint, sampling_ratio = otlp.sampling_ratio, "OTLP trace export on");
    Ok(Some(export))
}

/// A progress bar with rate and time left on a terminal; a plain line every five seconds otherwise.
fn replay_with_progress(
    production: &PalisadeConfig,
    candidate: &PalisadeConfig,
    range: &palisade_pipeline::replay::ReplayRange,
) -> anyhow::Result<palisade_pipeline::replay::ReplayReport> {
    use std::io::IsTerminal as _;
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::hidden();
    if terminal {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events, {per_sec}, {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    }
    let started = std::time::Instant::now();
    let mut last_line = started;
    let report = palisade_pipeline::replay::replay(production, candidate, range, |read, total| {
        if terminal {
            bar.set_length(total);
            bar.set_position(read);
        } else if last_line.elapsed() >= std::time::Duration::from_secs(5) || read == total {
            last_line = std::time::Instant::now();
            let rate = read as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprintln!("palisade replay: {read}/{total} events, {rate:.0}/s");
        }
    })?;
    bar.finish_and_clear();
    Ok(report)
}
