//! The cost of trace export, in one run: fills the audit topic with N audit events (the corpus's, each given its
//! own ID), then runs `palisade detect` over it three times from the start (a consumer group each): tracing off,
//! OTLP export at the default sampling ratio, and at 1.0 (every record's span exported), and prints events per
//! second for each from its `/metrics`. The records carry no trace context, so detect starts a trace per record,
//! as the first stage of a trace does. Asserts nothing. Configuration comes from the environment (see
//! bench/trace-overhead.sh); `PALISADE_TEST_OTLP` is the collector.
//!
//!   trace-overhead [events]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_pipeline::PalisadeConfig;
use palisade_runtime::bus::Outgoing;
use palisade_schemas::{AuditEvent, Codec};

fn consumed(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("palisade_stage_consumed_total{stage=\"detect\"}")?.trim().parse::<f64>().ok()
        })
        .map_or(0, |value| value as u64)
}

/// Runs detect with `envs` until it consumed `total`; events per second from its first count to the last.
async fn detect_rate(total: u64, group: &str, envs: &[(&str, String)]) -> anyhow::Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let binary = std::env::var("PALISADE_BIN").unwrap_or_else(|_| "palisade".into());
    let mut detect = Command::new(binary)
        .arg("detect")
        .env("PALISADE__METRICS_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("PALISADE__KAFKA__GROUP_PREFIX", group)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut first, mut done) = (None, None);
    while done.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(response) = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await else { continue };
        let count = consumed(&response.text().await.unwrap_or_default());
        if first.is_none() && count > 0 {
            first = Some((Instant::now(), count));
        }
        if count >= total {
            done = Some(Instant::now());
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(detect.id() as i32, libc::SIGTERM) };
    detect.wait()?;
    match (first, done) {
        (Some((start, counted)), Some(end)) => Ok((total - counted) as f64 / (end - start).as_secs_f64()),
        _ => anyhow::bail!("detect did not consume {total} events within 10 minutes"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let config = PalisadeConfig::load(None)?;
    let bus = palisade_pipeline::serve::build_bus(&config).await?;
    let topic = config.topics.audit_events.clone();
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/falco_k8s_audit_traces/all_events.jsonl");
    let events: Vec<serde_json::Value> = std::fs::read_to_string(corpus)?
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|line| line["event"].clone())
        .filter(|event| event.get("verb").is_some())
        .collect();
    let codec = Codec::<AuditEvent>::new()?;
    let started = Instant::now();
    let mut sends = futures::stream::FuturesUnordered::new();
    for n in 0..total {
        let mut event = events[n as usize % events.len()].clone();
        event["auditID"] = serde_json::json!(format!("overhead-{n:09}"));
        let event = AuditEvent::from_k8s_json(&event, "bench")?;
        let (payload, key) = (codec.encode(&event)?, event.partition_key());
        let (bus, topic) = (bus.clone(), topic.clone());
        sends.push(async move {
            bus.publish(Outgoing { topic: &topic, key: Some(key.as_bytes()), payload: &payload, headers: &[] }).await
        });
        if sends.len() >= 10_000 {
            use futures::StreamExt as _;
            sends.next().await.transpose()?;
        }
    }
    use futures::StreamExt as _;
    while let Some(sent) = sends.next().await {
        sent?;
    }
    println!("audit topic filled with {total} events in {:.1} s", started.elapsed().as_secs_f64());

    let endpoint = std::env::var("PALISADE_TEST_OTLP").unwrap_or_else(|_| "http://127.0.0.1:14318".into());
    let run = std::process::id();
    let otlp = |ratio: &str| {
        vec![
            ("PALISADE__TELEMETRY__OTLP__ENDPOINT", endpoint.clone()),
            ("PALISADE__TELEMETRY__OTLP__SAMPLING_RATIO", ratio.to_owned()),
            ("PALISADE__TELEMETRY__OTLP__SERVICE_NAME", format!("palisade-overhead-{run}")),
        ]
    };
    let default_ratio = "0.01";
    let cases: [(&str, Vec<(&str, String)>); 3] = [
        ("tracing off", Vec::new()),
        ("OTLP, sampling 0.01 (default)", otlp(default_ratio)),
        ("OTLP, sampling 1.0", otlp("1.0")),
    ];
    for (n, (name, envs)) in cases.iter().enumerate() {
        let rate = detect_rate(total, &format!("overhead-{run}-{n}"), envs).await?;
        println!("detect, {name}: {rate:.0} events/s");
    }
    Ok(())
}
