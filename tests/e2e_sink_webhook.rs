//! The webhook output on real Kafka, against an HTTP endpoint the test serves on loopback: `palisade sink` POSTs
//! batches of alerts as a JSON array with the bearer token from its file; the endpoint's first answer is 503, so
//! the batch is retried (counted on `/metrics`) and every alert arrives. Then the endpoint refuses with 400: that
//! batch's alerts reach the dead-letter topic with the endpoint's answer, and the alerts topic still has them all.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_schemas::{Alert, Codec};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const METRICS: &str = "127.0.0.1:19475";

/// One request the endpoint received: its Authorization header and its JSON body.
type Received = (String, Value);

/// Serves HTTP/1.1 on loopback, answering each request with the next status of `answers` (the last one repeats).
fn endpoint(answers: Arc<Mutex<Vec<u16>>>, received: Arc<Mutex<Vec<Received>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            loop {
                let (mut length, mut authorization) = (0usize, String::new());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    let (name, value) = header.split_once(':').unwrap_or((header, ""));
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "authorization" => authorization = value.trim().to_owned(),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = {
                    let mut answers = answers.lock().unwrap();
                    if answers.len() > 1 { answers.remove(0) } else { answers[0] }
                };
                if status == 200 {
                    received.lock().unwrap().push((authorization, serde_json::from_slice(&body).unwrap()));
                }
                let text = format!("HTTP/1.1 {status} X\r\ncontent-length: 7\r\n\r\nanswer\n");
                reader.get_mut().write_all(text.as_bytes()).unwrap();
            }
        }
    });
    port
}

fn metric(series: &str) -> f64 {
    let text = reqwest::blocking::get(format!("http://{METRICS}/metrics")).and_then(|r| r.text()).unwrap_or_default();
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

#[test]
fn the_webhook_is_retried_until_it_takes_every_alert_and_a_refused_batch_is_dead_lettered() {
    let answers = Arc::new(Mutex::new(vec![503, 200]));
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let port = endpoint(Arc::clone(&answers), Arc::clone(&received));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret-hook-token\n").unwrap();

    let mut stack = common::Stack::new("webhook");
    stack.set("PALISADE__SINK__WEBHOOK__URL", &format!("http://127.0.0.1:{port}/hooks/palisade"));
    stack.set("PALISADE__SINK__WEBHOOK__TOKEN_FILE", dir.path().join("token").to_str().unwrap());
    stack.set("PALISADE__SINK__WEBHOOK__BATCH_MAX_WAIT_MS", "200");
    stack.set("PALISADE__SINK__WEBHOOK__RETRY_INITIAL_BACKOFF_MS", "100");
    stack.set("PALISADE__METRICS_LISTEN_ADDR", METRICS);
    stack.start(&["sink"]);

    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/alert.v4.json")).unwrap();
    let template: Alert = serde_json::from_str(&text).unwrap();
    let codec = Codec::<Alert>::new().unwrap();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let send = |ids: &[String]| {
        for id in ids {
            let mut alert = template.clone();
            alert.id = id.clone();
            let payload = codec.encode(&alert).unwrap();
            producer.send(BaseRecord::to(&stack.topic("enriched")).key(id.as_str()).payload(&payload)).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    let first: Vec<String> = (0..20).map(|n| format!("{}-a{n:02}", stack.run)).collect();
    send(&first);
    let delivered = || -> BTreeSet<String> {
        let received = received.lock().unwrap();
        received
            .iter()
            .flat_map(|(_, body)| body.as_array().unwrap().iter())
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered().len() < first.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(delivered(), first.iter().cloned().collect(), "every alert reached the webhook:\n{}", stack.log("sink"));
    assert!(received.lock().unwrap().iter().all(|(auth, _)| auth == "Bearer s3cret-hook-token"), "the token is sent");
    assert!(metric(r#"palisade_sink_retries_total{output="webhook"}"#) >= 1.0, "the 503 was retried and counted");
    assert!(!stack.log("sink").contains("s3cret-hook-token"), "the token is not logged");

    // The endpoint now refuses: the next batch is dead-lettered with its answer.
    *answers.lock().unwrap() = vec![400];
    let refused: Vec<String> = (0..3).map(|n| format!("{}-r{n}", stack.run)).collect();
    send(&refused);
    let dead: Vec<(String, String)> =
        common::read_dead_letters(&stack.topic("dead_letter"), refused.len(), Duration::from_secs(30))
            .into_iter()
            .map(|(payload, reason)| (codec.decode(&payload).unwrap().id, reason))
            .collect();
    let dead_ids: BTreeSet<String> = dead.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        dead_ids,
        refused.iter().cloned().collect(),
        "the refused batch is dead-lettered:\n{}",
        stack.log("sink")
    );
    assert!(dead.iter().all(|(_, reason)| reason.contains("400")), "{dead:?}");
    // The alerts topic, a loop of its own, has every alert.
    let on_topic = common::collect_alerts(&stack.topic("alerts"), Duration::from_secs(20), |seen| seen.len() >= 23);
    assert_eq!(on_topic.len(), 23);
}
