//! The detector is SIGKILLed inside an open recon window and restarted: the burst still fires, once. Real Kafka;
//! `palisade detect` checkpoints its windows to `detect.state_path` and acknowledges inputs only after the
//! checkpoint that covers them.

mod common;

use std::time::{Duration, Instant};

use palisade_schemas::{Codec, Detection, NodeEvent};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn recon_exec(template: &NodeEvent, container: &str, command: &str, at_ms: i64) -> NodeEvent {
    let mut event = template.clone();
    event.event_id = format!("{container}/{command}/{at_ms}");
    event.timestamp_ms = at_ms;
    event.kernel_time_ns = at_ms * 1_000_000;
    event.executable = Some(format!("/usr/bin/{command}"));
    event.argv = vec![command.to_owned()];
    event.comm = command.to_owned();
    event.container_id = Some(container.to_owned());
    event.net = None;
    event
}

fn produce(producer: &BaseProducer, topic: &str, events: &[NodeEvent]) {
    let codec = Codec::<NodeEvent>::new().unwrap();
    for event in events {
        let payload = codec.encode(event).unwrap();
        let key = event.partition_key();
        producer.send(BaseRecord::to(topic).key(&key).payload(&payload)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Burst detections for `container` on the detections topic: polled until `wait` passes, or until 5 s after the
/// first one (time for a duplicate to show).
fn bursts(topic: &str, container: &str, wait: Duration) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", format!("restart-reader-{}", common::run_id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let codec = Codec::<Detection>::new().unwrap();
    let mut deadline = Instant::now() + wait;
    let mut count = 0;
    while Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let detection = codec.decode(message.payload().unwrap_or_default()).unwrap();
            if detection.alert_type == "K8S.NODE_ReconnaissanceArtifactsBurst"
                && detection.container_id.as_deref() == Some(container)
            {
                count += 1;
                deadline = deadline.min(Instant::now() + Duration::from_secs(5));
            }
        }
    }
    count
}

/// Offsets the detector's consumer group has committed on `topic`, summed over partitions.
fn committed(group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA"))
        .set("group.id", group)
        .create()
        .unwrap();
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return 0 };
    let mut partitions = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions.add_partition(topic, partition.id());
    }
    let Ok(offsets) = consumer.committed_offsets(partitions, Duration::from_secs(5)) else { return 0 };
    offsets.elements().iter().filter_map(|e| if let Offset::Offset(n) = e.offset() { Some(n) } else { None }).sum()
}

/// Two recon commands, a checkpoint and a commit that covers them, SIGKILL, optionally the checkpoint deleted,
/// a restart, two more commands: how many bursts fire.
fn burst_across_a_kill(stack: &mut common::Stack, container: &str, keep_checkpoint: bool, first_offset: i64) -> usize {
    let state = stack.logs.join("detect-state.json");
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/fixtures/node_event.v1.json")).unwrap();
    let template: NodeEvent = serde_json::from_str(&text).unwrap();
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", common::env("PALISADE_TEST_KAFKA")).create().unwrap();
    let topic = stack.topic("node_events");
    let group = format!("palisade-{}-detect", stack.run);
    let t = 1_764_000_000_000i64;
    stack.start(&["detect"]);
    produce(
        &producer,
        &topic,
        &[recon_exec(&template, container, "whoami", t), recon_exec(&template, container, "id", t + 1000)],
    );
    // The two commands are in a checkpoint and their offsets committed (so they are not delivered again); then
    // the detector dies without any shutdown.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&state).unwrap_or_default().contains(container)
        || committed(&group, &topic) < first_offset + 2
    {
        assert!(Instant::now() < deadline, "no checkpoint and commit for the open window:\n{}", stack.log("detect"));
        std::thread::sleep(Duration::from_millis(200));
    }
    stack.kill("detect");
    if !keep_checkpoint {
        std::fs::remove_file(&state).unwrap();
    }
    stack.start(&["detect"]);
    produce(
        &producer,
        &topic,
        &[recon_exec(&template, container, "uname", t + 2000), recon_exec(&template, container, "hostname", t + 3000)],
    );
    let wait = if keep_checkpoint { Duration::from_secs(30) } else { Duration::from_secs(15) };
    let seen = bursts(&stack.topic("detections"), container, wait);
    stack.kill("detect");
    seen
}

#[test]
fn a_recon_window_open_across_a_detector_kill_fires_once() {
    let mut stack = common::Stack::new("detect-restart");
    let state = stack.logs.join("detect-state.json");
    stack.set("PALISADE__DETECT__STATE_PATH", &state.display().to_string());
    stack.set("PALISADE__DETECT__CHECKPOINT_SECS", "1");
    let id = |n: u64| format!("{n:0>64x}");
    let resumed = burst_across_a_kill(&mut stack, &id(0xa11), true, 0);
    assert_eq!(resumed, 1, "the burst completed after the restart fires exactly once:\n{}", stack.log("detect"));
    // The control: without the checkpoint the first two commands are gone (committed, not redelivered), so the
    // same sequence raises nothing. This is what the checkpoint is for.
    let forgotten = burst_across_a_kill(&mut stack, &id(0xb22), false, 4);
    assert_eq!(forgotten, 0, "without the checkpoint there is no burst");
}
