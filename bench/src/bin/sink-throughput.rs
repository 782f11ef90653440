//! Sink throughput on real Kafka and OpenSearch: fills the enriched topic with N distinct alerts, then starts
//! `palisade sink` (exactly-once alerts topic and the index, two loops) and reads its `/metrics` every 100 ms
//! until both outputs took all N. Prints alerts per second onto the topic and into the index; asserts nothing.
//! Configuration comes from the environment the sink reads (see bench/sink-throughput.sh).
//!
//!   sink-throughput [alerts]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palisade_pipeline::PalisadeConfig;
use palisade_runtime::bus::Outgoing;
use palisade_schemas::{Alert, Codec};

fn written(metrics: &str, output: &str, outcome: &str) -> u64 {
    let series = format!("palisade_sink_alerts_total{{outcome=\"{outcome}\",output=\"{output}\"}}");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str())?.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let config = PalisadeConfig::load(None)?;
    let bus = palisade_pipeline::serve::build_bus(&config).await?;
    let topic = config.topics.enriched.clone();
    let template: Alert = serde_json::from_str(include_str!("../../../schemas/fixtures/alert.v4.json"))?;
    let codec = Codec::<Alert>::new()?;

    let started = Instant::now();
    let mut sends = Vec::new();
    for n in 0..total {
        let mut alert = template.clone();
        alert.id = format!("throughput-{n:08}");
        let payload = codec.encode(&alert)?;
        let (bus, topic) = (bus.clone(), topic.clone());
        sends.push(tokio::spawn(async move {
            let key = alert.id.clone();
            bus.publish(Outgoing { topic: &topic, key: Some(key.as_bytes()), payload: &payload, headers: &[] }).await
        }));
    }
    for send in sends {
        send.await??;
    }
    println!("enriched topic filled with {total} alerts in {:.1} s", started.elapsed().as_secs_f64());

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let binary = std::env::var("PALISADE_BIN").unwrap_or_else(|_| "palisade".into());
    let mut sink = Command::new(binary)
        .arg("sink")
        .env("PALISADE__METRICS_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    // Per output: when its count first moved (start-up and the consumer group join are left out) and when it
    // reached the total.
    let mut progress: [(Option<Instant>, Option<Instant>); 2] = [(None, None); 2];
    let deadline = started + Duration::from_secs(300);
    while progress.iter().any(|(_, done)| done.is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(response) = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await else { continue };
        let metrics = response.text().await.unwrap_or_default();
        let counts = [
            written(&metrics, "topic", "written"),
            written(&metrics, "opensearch", "indexed") + written(&metrics, "opensearch", "rejected"),
        ];
        let now = Instant::now();
        for ((first, done), count) in progress.iter_mut().zip(counts) {
            if first.is_none() && count > 0 {
                *first = Some(now);
            }
            if done.is_none() && count >= total {
                *done = Some(now);
            }
        }
    }
    let _ = sink.kill();
    let _ = sink.wait();
    println!("sink start-up to its first written alert: {:?}", progress[0].0.map(|first| first - started));
    for (what, (first, done)) in ["alerts topic (exactly once)", "search index"].iter().zip(progress) {
        match (first, done) {
            (Some(first), Some(done)) => {
                let secs = (done - first).as_secs_f64().max(0.1);
                println!("{what}: {total} alerts in {secs:.1} s after the first = {:.0} alerts/s", total as f64 / secs);
            }
            _ => println!("{what}: not all {total} alerts within 300 s"),
        }
    }
    Ok(())
}
