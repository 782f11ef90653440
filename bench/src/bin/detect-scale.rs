//! Throughput of 1, 2 and 3 `palisade detect` instances (state in the changelog topic) on real Kafka: for each
//! count, fills a node-events topic of 6 partitions with N events of the realistic node mix (`node_mix`: 60 nodes
//! of 10 containers, mostly benign execs, opens and connects, 1 % attacks), starts the instances in one consumer
//! group, and reads the group's committed offsets every 200 ms until they cover all N. Prints events per second
//! (from the first committed offset to the last, so start-up and the group join are left out) and the changelog
//! records and bytes written per second. Asserts nothing. Configuration (Kafka) comes from the environment the
//! stage reads (see bench/detect-scale.sh).
//!
//!   [NODES=60 CONTAINERS=10] detect-scale [events] [counts, e.g. 1,2,3]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_pipeline::PalisadeConfig;
use palisade_runtime::bus::Outgoing;
use palisade_schemas::{Codec, NodeEvent};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;

struct Instances(Vec<Child>);

impl Drop for Instances {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The group's committed offsets on `topic`, summed over its partitions.
fn committed(kafka: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", kafka).set("group.id", group).create().expect("a consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let Ok(offsets) = consumer.committed_offsets(partitions, Duration::from_secs(5)) else { return 0 };
    offsets.elements().iter().filter_map(|e| if let Offset::Offset(n) = e.offset() { Some(n) } else { None }).sum()
}

/// Records and payload bytes on `topic` (read committed, every partition to its end).
fn records_and_bytes(kafka: &str, topic: &str) -> (u64, u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("group.id", format!("detect-scale-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("a consumer");
    let partitions = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map(|m| m.topics().iter().map(|t| t.partitions().len()).sum::<usize>())
        .unwrap_or(0);
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).expect("an offset");
    }
    consumer.assign(&assignment).expect("an assignment");
    let (mut records, mut bytes, mut ended) = (0, 0, std::collections::BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    while ended.len() < partitions && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                records += 1;
                bytes += (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    (records, bytes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let counts: Vec<usize> =
        std::env::args().nth(2).unwrap_or_else(|| "1,2,3".into()).split(',').filter_map(|n| n.parse().ok()).collect();
    let base = PalisadeConfig::load(None)?;
    let kafka = base.kafka.as_ref().map(|k| k.bootstrap_servers.clone()).ok_or(anyhow::anyhow!("[kafka] needed"))?;
    let binary = std::env::var("PALISADE_BIN").unwrap_or_else(|_| "palisade".into());
    let codec = Codec::<NodeEvent>::new()?;
    // One pass of the mix, repeated with later times: NODES nodes of CONTAINERS containers (60 × 10 by default).
    let var = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (nodes, containers) = (var("NODES", 60), var("CONTAINERS", 10));
    let mix = palisade_bench::node_mix((nodes * containers * 10).max(6_000), nodes, containers);
    let run = format!("ds{}", std::process::id());

    for instances in counts {
        let prefix = format!("{run}-{instances}");
        let mut config = base.clone();
        let topics = &mut config.topics;
        for (topic, name) in [
            (&mut topics.node_events, "node.events"),
            (&mut topics.audit_events, "audit.events"),
            (&mut topics.cloud_activity, "cloud.activity"),
            (&mut topics.detections, "detections"),
            (&mut topics.dead_letter, "dead-letter"),
            (&mut topics.detect_changelog, "detect.changelog"),
            (&mut topics.detect_rekeyed, "detect.rekeyed"),
        ] {
            *topic = format!("{prefix}.{name}");
        }
        if let Some(kafka) = config.kafka.as_mut() {
            kafka.topic_partitions = PARTITIONS;
            kafka.create_topics = true;
            kafka.group_prefix = format!("palisade-{prefix}");
        }
        let bus = palisade_pipeline::serve::build_bus(&config).await?;
        let started = Instant::now();
        let mut sends = Vec::with_capacity(total);
        for n in 0..total {
            let mut event = mix[n % mix.len()].clone();
            event.event_id = format!("{prefix}/{n}");
            event.timestamp_ms += (n / mix.len()) as i64 * 60_000;
            let payload = codec.encode(&event)?;
            let (bus, topic, key) = (bus.clone(), config.topics.node_events.clone(), event.partition_key());
            sends.push(tokio::spawn(async move {
                bus.publish(Outgoing { topic: &topic, key: Some(key.as_bytes()), payload: &payload, headers: &[] })
                    .await
            }));
        }
        for send in sends {
            send.await??;
        }
        eprintln!("{instances} instance(s): {total} events produced in {:.1} s", started.elapsed().as_secs_f64());

        let mut envs: Vec<(String, String)> = vec![
            ("PALISADE__DETECT__KAFKA_STATE".into(), "true".into()),
            ("PALISADE__KAFKA__TOPIC_PARTITIONS".into(), PARTITIONS.to_string()),
            ("PALISADE__KAFKA__GROUP_PREFIX".into(), format!("palisade-{prefix}")),
            ("RUST_LOG".into(), "warn".into()),
        ];
        for (key, topic) in [
            ("NODE_EVENTS", &config.topics.node_events),
            ("AUDIT_EVENTS", &config.topics.audit_events),
            ("CLOUD_ACTIVITY", &config.topics.cloud_activity),
            ("DETECTIONS", &config.topics.detections),
            ("DEAD_LETTER", &config.topics.dead_letter),
            ("DETECT_CHANGELOG", &config.topics.detect_changelog),
            ("DETECT_REKEYED", &config.topics.detect_rekeyed),
        ] {
            envs.push((format!("PALISADE__TOPICS__{key}"), topic.clone()));
        }
        let children = (0..instances)
            .map(|n| {
                Command::new(&binary)
                    .arg("detect")
                    .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .env("PALISADE__DETECT__TRANSACTIONAL_ID", format!("palisade-detect-{prefix}-{n}"))
                    .env_remove("PALISADE__METRICS_LISTEN_ADDR")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let children = Instances(children);
        let group = format!("palisade-{prefix}-detect");
        let (mut first, mut done) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(900);
        while done.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (kafka, group, topic) = (kafka.clone(), group.clone(), config.topics.node_events.clone());
            let at = tokio::task::spawn_blocking(move || committed(&kafka, &group, &topic)).await?;
            if first.is_none() && at > 0 {
                first = Some((Instant::now(), at));
            }
            if at >= total as i64 {
                done = Some(Instant::now());
            }
        }
        drop(children);
        let (Some((first_at, first_offset)), Some(done)) = (first, done) else {
            println!("{instances} instance(s): did not consume {total} events within 15 min");
            continue;
        };
        let seconds = done.duration_since(first_at).as_secs_f64().max(0.001);
        let (kafka_for_read, changelog) = (kafka.clone(), config.topics.detect_changelog.clone());
        let (records, bytes) =
            tokio::task::spawn_blocking(move || records_and_bytes(&kafka_for_read, &changelog)).await?;
        println!(
            "{instances} instance(s): {:.0} events/s ({} events in {seconds:.1} s after the first commit); \
             changelog {records} records, {:.1} MiB ({:.0} records/s, {:.2} MiB/s)",
            (total as i64 - first_offset) as f64 / seconds,
            total as i64 - first_offset,
            bytes as f64 / 1048576.0,
            records as f64 / seconds,
            bytes as f64 / 1048576.0 / seconds,
        );
    }
    Ok(())
}
