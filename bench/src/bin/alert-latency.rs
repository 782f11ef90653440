//! Load generator for the Kafka pipeline: produces node events that each raise one alert (the harmless test
//! trigger, one container each, so nothing folds) at a fixed rate into `topics.node_events`, and measures, per
//! alert, the time from the event being produced to (a) the alert on the alerts topic (`read_committed`) and
//! (b) the alert being searchable in the index (a sample of 1 in 10, found by one poller). Prints figures;
//! asserts nothing. The detect, enrich and sink stages run as their own processes (see bench/alert-latency.sh);
//! configuration comes from the same environment they read (`PALISADE__KAFKA__BOOTSTRAP_SERVERS`, `PALISADE__TOPICS__*`,
//! `PALISADE__SINK__OPENSEARCH__*`).
//!
//!   alert-latency [alerts per second] [seconds]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_pipeline::PalisadeConfig;
use palisade_runtime::bus::Outgoing;
use palisade_schemas::{Alert, Codec, NodeEvent};

/// Every how many alerts one is followed into the index.
const SAMPLE_EVERY: usize = 10;
/// How often the index is asked for the sampled alerts not found yet.
const SEARCH_POLL: Duration = Duration::from_millis(100);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

fn percentile(sorted: &[i64], fraction: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn trigger(template: &NodeEvent, index: usize, run: &str) -> NodeEvent {
    let mut event = template.clone();
    let at = now_ms();
    event.event_id = format!("latency/{run}/{index}");
    event.kind = palisade_schemas::NodeEventKind::Exec;
    event.timestamp_ms = at;
    event.executable = Some("/tmp/palisade_alerttest_5f3c9e".into());
    event.argv = vec!["palisade_alerttest_5f3c9e".into()];
    event.container_id = Some(format!("{index:0>64x}"));
    event.net = None;
    event
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rate: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let config = PalisadeConfig::load(None)?;
    let bus = palisade_pipeline::serve::build_bus(&config).await?;
    let topics = config.topics.clone();
    let index_prefix = config.sink.opensearch.as_ref().map(|o| o.index_prefix.clone());
    let search_url = config.sink.opensearch.as_ref().map(|o| o.url.clone());
    let run = format!("{:x}", now_ms());
    let template: NodeEvent =
        serde_json::from_str(include_str!("../../../schemas/fixtures/node_event.v1.json")).expect("fixture");

    let mut alerts = bus.subscribe(&[&topics.alerts], &format!("latency-bench-{run}"))?;
    let to_topic: Arc<Mutex<Vec<i64>>> = Arc::default();
    let searchable: Arc<Mutex<Vec<i64>>> = Arc::default();
    let total = rate * seconds;
    // Alerts (a sample) on the topic and not yet found in the index, with the time their event was produced.
    let pending_search: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let reading_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (to_topic, run, pending_search) = (Arc::clone(&to_topic), run.clone(), Arc::clone(&pending_search));
        tokio::spawn(async move {
            let codec = Codec::<Alert>::new().expect("schemas");
            let mut seen: HashMap<String, ()> = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(seconds as u64 + 60);
            while seen.len() < total && Instant::now() < deadline {
                let Ok(Some(Ok(delivery))) = tokio::time::timeout(Duration::from_secs(5), alerts.next()).await else {
                    continue;
                };
                let received = now_ms();
                let Ok(alert) = codec.decode(&delivery.message.payload) else { continue };
                let _ = delivery.ack();
                let Some(index) = alert
                    .evidence
                    .first()
                    .and_then(|e| e.split(&format!("latency/{run}/")).nth(1))
                    .and_then(|rest| rest.split('"').next()?.parse::<usize>().ok())
                else {
                    continue;
                };
                if seen.insert(alert.id.clone(), ()).is_some() {
                    continue;
                }
                to_topic.lock().unwrap().push(received - alert.timestamp_ms);
                if index % SAMPLE_EVERY == 0 {
                    pending_search.lock().unwrap().insert(alert.id.clone(), alert.timestamp_ms);
                }
            }
            seen.len()
        })
    };

    // One poller asks the index for every pending ID at once, every SEARCH_POLL: the load it adds does not grow
    // with the rate or the latency (a poll per alert did, and slowed the node it measured).
    let searcher = {
        let (searchable, pending_search, reading_done) =
            (Arc::clone(&searchable), Arc::clone(&pending_search), Arc::clone(&reading_done));
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            let (Some(url), Some(prefix)) = (search_url, index_prefix) else { return };
            let deadline = Instant::now() + Duration::from_secs(seconds as u64 + 120);
            while Instant::now() < deadline {
                tokio::time::sleep(SEARCH_POLL).await;
                let ids: Vec<String> = pending_search.lock().unwrap().keys().take(5000).cloned().collect();
                if ids.is_empty() {
                    if reading_done.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    continue;
                }
                let query = serde_json::json!({"query": {"ids": {"values": ids}}, "_source": false, "size": ids.len()});
                let url = format!("{url}/{prefix}-*/_search?filter_path=hits.hits._id");
                let Ok(response) = client.post(url).json(&query).send().await else { continue };
                let Ok(body) = response.json::<serde_json::Value>().await else { continue };
                let found_at = now_ms();
                let hits =
                    body.pointer("/hits/hits").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
                let mut pending = pending_search.lock().unwrap();
                for hit in hits {
                    if let Some(produced) = hit["_id"].as_str().and_then(|id| pending.remove(id)) {
                        searchable.lock().unwrap().push(found_at - produced);
                    }
                }
            }
        })
    };

    let codec = Codec::<NodeEvent>::new()?;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let per_tick = rate.div_ceil(100);
    let mut produced = 0;
    // Sends are not awaited tick by tick (a tick waiting for its acknowledgements would cap the rate); they are
    // checked once everything was produced.
    let mut pending = Vec::new();
    while produced < total {
        ticker.tick().await;
        let mut sends = Vec::new();
        for _ in 0..per_tick.min(total - produced) {
            let event = trigger(&template, produced, &run);
            let payload = codec.encode(&event)?;
            let key = event.partition_key();
            let (bus, topic) = (bus.clone(), topics.node_events.clone());
            sends.push(async move {
                bus.publish(Outgoing { topic: &topic, key: Some(key.as_bytes()), payload: &payload, headers: &[] })
                    .await
            });
            produced += 1;
        }
        pending.push(tokio::spawn(futures::future::join_all(sends)));
    }
    let production_secs = started.elapsed().as_secs_f64();
    for sends in pending {
        for result in sends.await? {
            result?;
        }
    }
    let received = reader.await?;
    let elapsed = started.elapsed().as_secs_f64();
    reading_done.store(true, std::sync::atomic::Ordering::Release);
    searcher.await?;
    let never_found = pending_search.lock().unwrap().len();
    let mut topic_latency = to_topic.lock().unwrap().clone();
    let mut search_latency = searchable.lock().unwrap().clone();
    topic_latency.sort_unstable();
    search_latency.sort_unstable();
    println!("produced {produced} events in {production_secs:.1} s ({:.0}/s)", produced as f64 / production_secs);
    println!("alerts on the topic: {received} of {produced} within {elapsed:.1} s");
    println!(
        "event → alert on the topic: p50 {} ms, p99 {} ms, max {} ms",
        percentile(&topic_latency, 0.5),
        percentile(&topic_latency, 0.99),
        topic_latency.last().copied().unwrap_or(-1)
    );
    println!(
        "event → searchable (sample of {}, 1 in {SAMPLE_EVERY}, polled every {} ms; {never_found} never found): \
         p50 {} ms, p99 {} ms",
        search_latency.len(),
        SEARCH_POLL.as_millis(),
        percentile(&search_latency, 0.5),
        percentile(&search_latency, 0.99)
    );
    Ok(())
}
