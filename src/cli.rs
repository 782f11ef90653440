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
    /// List the alert types.
    Catalogue {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
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
        Command::Catalogue { json } => {
            print!("{}", palisade_detect::catalogue::render(json));
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
                "palisade: scanned {} events, {} alerts, {} bad lines",
                report.events, report.alerts, report.bad_lines
            );
            Ok(if report.bad_lines > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Run { alerts_file, quiet } => {
            let config = load()?;
            palisade_runtime::telemetry::init_logging(config.log_json);
            let options = RunOptions { alerts_file, print_alerts: !quiet };
            runtime()?.block_on(async {
                let shutdown = Shutdown::new();
                shutdown.listen_for_signals();
                palisade_pipeline::run::run(config, options, shutdown).await
            })?;
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
            palisade_runtime::telemetry::init_logging(config.log_json);
            runtime()?.block_on(async {
                let shutdown = Shutdown::new();
                shutdown.listen_for_signals();
                palisade_pipeline::serve::serve(stage, config, shutdown).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
