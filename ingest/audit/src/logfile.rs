//! Tails audit log files written by kube-apiserver's log backend (`--audit-log-path`), one JSON event per line,
//! and cloud activity files (CloudTrail or Azure activity log records as JSON lines, `CloudActivity` out).
//! The position (inode and byte offset of the last line the bus acknowledged) is saved in `position_dir`, so a
//! restart resumes where it stopped: nothing is sent twice after a clean stop, and nothing is skipped. Rotation
//! (rename, then a new file) is followed: the open handle of the old file is read to its end first, and a file
//! rotated while the tailer was down is found again by its inode in the same directory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_runtime::bus::Outgoing;
use palisade_runtime::{Bus, Message, Shutdown};
use palisade_schemas::{AuditEvent, CloudActivity, Codec};
use palisade_telemetry::RecordProduced;

const STAGE: &str = "audit-log";

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("audit log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Codec(#[from] palisade_schemas::CodecError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TailError + '_ {
    move |source| TailError::Io { path: path.display().to_string(), source }
}

/// Where reading stands: which file (inode) and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
}

/// What the lines of a tailed file hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// An `audit.k8s.io` Event per line → `AuditEvent`.
    Audit,
    /// A CloudTrail or Azure activity record (or a document of them) per line → `CloudActivity`.
    Cloud,
}

/// The records of one line as (key, payload), and the record type's name.
type Encoded = (Vec<(String, Vec<u8>)>, &'static str);

/// The codecs a tailer encodes with.
struct Codecs {
    audit: Codec<AuditEvent>,
    cloud: Codec<CloudActivity>,
}

impl Codecs {
    /// The records one line carries, as (key, payload), with the record type's name; or why it is refused.
    fn encode(&self, format: LineFormat, line: &[u8], cluster: &str) -> Result<Encoded, String> {
        let value = serde_json::from_slice::<serde_json::Value>(line).map_err(|e| format!("not JSON: {e}"))?;
        match format {
            LineFormat::Audit => {
                let event = AuditEvent::from_k8s_json(&value, cluster).map_err(|e| e.to_string())?;
                let payload = self.audit.encode(&event).map_err(|e| e.to_string())?;
                Ok((vec![(event.partition_key(), payload)], "AuditEvent"))
            }
            LineFormat::Cloud => {
                let records = CloudActivity::from_cloud_json(&value).map_err(|e| e.to_string())?;
                let encoded = records
                    .iter()
                    .map(|r| {
                        Ok((format!("{}/{}", r.provider, r.identity), self.cloud.encode(r).map_err(|e| e.to_string())?))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok((encoded, "CloudActivity"))
            }
        }
    }
}

/// Bytes read from a file per pass: a backlog of gigabytes is worked through a slice at a time, not loaded.
const READ_CHUNK_BYTES: u64 = 1024 * 1024;
/// Longest line kept while waiting for its end; a longer one is forwarded as it stands (and dead-lettered, being
/// incomplete JSON), then the rest of it up to its newline likewise, so memory stays bounded.
const MAX_PENDING_LINE_BYTES: usize = 16 * 1024 * 1024;

pub struct Tailer {
    path: PathBuf,
    format: LineFormat,
    position_file: PathBuf,
    cluster: String,
    topic: String,
    dead_letter_topic: String,
    poll: Duration,
}

impl Tailer {
    pub fn new(
        path: &Path,
        position_dir: &Path,
        cluster: &str,
        topic: &str,
        dead_letter_topic: &str,
        poll: Duration,
        format: LineFormat,
    ) -> Self {
        let name: String =
            path.display().to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        Self {
            path: path.to_owned(),
            format,
            position_file: position_dir.join(format!("{name}.pos")),
            cluster: cluster.to_owned(),
            topic: topic.to_owned(),
            dead_letter_topic: dead_letter_topic.to_owned(),
            poll,
        }
    }

    fn load_position(&self) -> Position {
        std::fs::read_to_string(&self.position_file)
            .ok()
            .and_then(|text| {
                let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
                Some(Position { inode: parts.next()??, offset: parts.next()?? })
            })
            .unwrap_or_default()
    }

    fn save_position(&self, position: Position) -> Result<(), TailError> {
        let text = format!("{} {}\n", position.inode, position.offset);
        crate::forward::write_atomically(&self.position_file, text.as_bytes()).map_err(io(&self.position_file))
    }

    /// A file in the log's directory with this inode (the log, rotated under another name while we were away).
    fn find_by_inode(&self, inode: u64) -> Option<PathBuf> {
        let dir = self.path.parent()?;
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == inode))
    }

    /// Runs until shutdown, then saves the position of the last acknowledged line.
    pub async fn run(self, bus: Bus, shutdown: Shutdown) -> Result<(), TailError> {
        let codec = Codecs { audit: Codec::<AuditEvent>::new()?, cloud: Codec::<CloudActivity>::new()? };
        let saved = self.load_position();
        // Resume in the file we were reading, wherever rotation put it; else start the current file.
        let (mut file, mut position) = match self.find_by_inode(saved.inode).filter(|_| saved.inode != 0) {
            Some(path) => {
                let mut file = File::open(&path).map_err(io(&path))?;
                file.seek(SeekFrom::Start(saved.offset)).map_err(io(&path))?;
                (Some(file), saved)
            }
            None => (None, Position::default()),
        };
        let mut pending = Vec::new();
        loop {
            let mut more_waiting = false;
            if file.is_none() {
                match File::open(&self.path) {
                    Ok(opened) => {
                        let inode = opened.metadata().map_err(io(&self.path))?.ino();
                        position = Position { inode, offset: 0 };
                        file = Some(opened);
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(io(&self.path)(error)),
                }
            }
            if let Some(current) = file.as_mut() {
                // A log truncated in place starts over.
                if current.metadata().map_err(io(&self.path))?.len() < position.offset {
                    current.seek(SeekFrom::Start(0)).map_err(io(&self.path))?;
                    position.offset = 0;
                    pending.clear();
                }
                // While a whole line the bus refused is still held, read nothing more: memory would grow by a
                // slice a poll for as long as the bus is away.
                let mut chunk = Vec::new();
                let read = if pending.contains(&b'\n') {
                    None
                } else {
                    let read =
                        Read::by_ref(current).take(READ_CHUNK_BYTES).read_to_end(&mut chunk).map_err(io(&self.path))?;
                    Some(read)
                };
                more_waiting = read == Some(READ_CHUNK_BYTES as usize);
                let read_nothing = read == Some(0);
                pending.extend_from_slice(&chunk);
                let mut consumed = 0;
                let mut refused = false;
                while let Some(end) = pending[consumed..].iter().position(|b| *b == b'\n') {
                    let line = &pending[consumed..consumed + end];
                    if !self.forward(&bus, &codec, line, position).await {
                        // The bus refused: keep the line, retry on the next poll.
                        refused = true;
                        break;
                    }
                    consumed += end + 1;
                    position.offset += (end + 1) as u64;
                }
                // A line with no end in sight: forwarded as it stands rather than held without bound.
                if !refused && pending.len() - consumed > MAX_PENDING_LINE_BYTES {
                    let line = &pending[consumed..];
                    if self.forward(&bus, &codec, line, position).await {
                        position.offset += line.len() as u64;
                        consumed = pending.len();
                    } else {
                        refused = true;
                    }
                }
                pending.drain(..consumed);
                // Rotated: the path now names another file. Switch once a read of the old handle finds nothing
                // more (the writer may still have flushed into it just after the rename). A last line the writer
                // never finished in the old file is forwarded as it stands: it will get no end now.
                let rotated = std::fs::metadata(&self.path).is_ok_and(|m| m.ino() != position.inode);
                if rotated && read_nothing && !refused && !pending.is_empty() {
                    if self.forward(&bus, &codec, &pending, position).await {
                        position.offset += pending.len() as u64;
                        consumed += pending.len();
                        pending.clear();
                    } else {
                        refused = true;
                    }
                }
                if consumed > 0 {
                    self.save_position(position)?;
                }
                if rotated && read_nothing && pending.is_empty() {
                    file = None;
                    continue;
                }
                if refused {
                    more_waiting = false;
                }
            }
            if shutdown.is_triggered() {
                return self.save_position(position);
            }
            if more_waiting {
                // A backlog: the next slice at once, still giving other tasks their turn.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    /// Publishes one line's records (or dead-letters the line); false when the bus did not take them all (the line
    /// is then sent again: a record of a multi-record line may go twice, never none).
    async fn forward(&self, bus: &Bus, codecs: &Codecs, line: &[u8], position: Position) -> bool {
        if line.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        match codecs.encode(self.format, line, &self.cluster) {
            Ok((records, record)) => {
                for (key, payload) in &records {
                    let outgoing = Outgoing { topic: &self.topic, key: Some(key.as_bytes()), payload, headers: &[] };
                    match bus.publish(outgoing).await {
                        Ok(()) => {
                            palisade_telemetry::health::succeeded(STAGE);
                            RecordProduced { stage: STAGE, record }.emit();
                        }
                        // Never retried: the line goes to the dead-letter topic (cut to fit) with the reason.
                        Err(error @ palisade_runtime::BusError::TooLarge { .. }) => {
                            let original = self.line_message(line, position);
                            let reason = error.to_string();
                            if bus.dead_letter(&self.dead_letter_topic, STAGE, &original, &reason).await.is_err() {
                                return false;
                            }
                        }
                        Err(error) => {
                            palisade_telemetry::health::failing(STAGE, &format!("the bus refuses log lines: {error}"));
                            return false;
                        }
                    }
                }
                true
            }
            Err(reason) => {
                let original = self.line_message(line, position);
                bus.dead_letter(&self.dead_letter_topic, STAGE, &original, &reason).await.is_ok()
            }
        }
    }

    /// A line as the dead-letter topic keeps it: its file and offset name where it came from.
    fn line_message(&self, line: &[u8], position: Position) -> Message {
        Message {
            topic: format!("file:{}", self.path.display()),
            partition: -1,
            offset: position.offset as i64,
            key: None,
            payload: line.to_vec(),
            headers: vec![],
            timestamp_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn line(id: &str) -> String {
        format!(
            "{{\"kind\":\"Event\",\"auditID\":\"{id}\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/api\",\"user\":{{\"username\":\"u\"}},\"stageTimestamp\":\"2026-11-27T10:00:00Z\"}}\n"
        )
    }

    fn append(path: &Path, ids: &[&str]) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        for id in ids {
            file.write_all(line(id).as_bytes()).unwrap();
        }
    }

    async fn receive(subscription: &mut palisade_runtime::Subscription, count: usize) -> Vec<String> {
        let codec = Codec::<AuditEvent>::new().unwrap();
        let mut ids = Vec::new();
        for _ in 0..count {
            let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.next())
                .await
                .expect("event")
                .unwrap()
                .unwrap();
            ids.push(codec.decode(&delivery.message.payload).unwrap().audit_id);
        }
        ids
    }

    /// An empty directory of the test's own under the temporary directory.
    fn fresh_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("palisade-tail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn start(dir: &Path, bus: &Bus) -> (Shutdown, tokio::task::JoinHandle<Result<(), TailError>>) {
        let tailer = Tailer::new(
            &dir.join("audit.log"),
            &dir.join("positions"),
            "c",
            "audit",
            "dlq",
            Duration::from_millis(20),
            LineFormat::Audit,
        );
        let shutdown = Shutdown::new();
        (shutdown.clone(), tokio::spawn(tailer.run(bus.clone(), shutdown)))
    }

    #[tokio::test]
    async fn resumes_after_restart_and_follows_rotation_without_loss_or_repeat() {
        let dir = fresh_dir("rotation");
        let log = dir.join("audit.log");
        let bus = Bus::in_process();
        let mut events = bus.subscribe(&["audit"], "t").unwrap();
        let mut dead = bus.subscribe(&["dlq"], "t").unwrap();

        append(&log, &["a", "b", "c"]);
        let (stop, task) = start(&dir, &bus).await;
        assert_eq!(receive(&mut events, 3).await, ["a", "b", "c"]);
        stop.trigger();
        task.await.unwrap().unwrap();

        // While stopped: more lines, a rotation, lines written to the rotated file, a new file.
        append(&log, &["d"]);
        std::fs::rename(&log, dir.join("audit.log.1")).unwrap();
        append(&dir.join("audit.log.1"), &["e"]);
        append(&log, &["f", "g"]);
        let (stop, task) = start(&dir, &bus).await;
        assert_eq!(receive(&mut events, 4).await, ["d", "e", "f", "g"], "nothing repeated, nothing skipped");

        // Rotation while running, and a bad line in between.
        append(&log, &["h"]);
        std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"{not json\n").unwrap();
        std::fs::rename(&log, dir.join("audit.log.2")).unwrap();
        append(&log, &["i"]);
        assert_eq!(receive(&mut events, 2).await, ["h", "i"]);
        let bad = tokio::time::timeout(Duration::from_secs(5), dead.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(bad.message.payload, b"{not json");
        stop.trigger();
        task.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_old_file_ending_mid_line_does_not_stop_the_switch_to_the_new_one() {
        let dir = fresh_dir("midline");
        let log = dir.join("audit.log");
        let bus = Bus::in_process();
        let mut events = bus.subscribe(&["audit"], "t").unwrap();
        let mut dead = bus.subscribe(&["dlq"], "t").unwrap();
        append(&log, &["a"]);
        // The writer died mid-line, then the log was rotated and a new writer started.
        std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"{\"kind\":\"Ev").unwrap();
        let (stop, task) = start(&dir, &bus).await;
        assert_eq!(receive(&mut events, 1).await, ["a"]);
        std::fs::rename(&log, dir.join("audit.log.1")).unwrap();
        append(&log, &["b", "c"]);
        assert_eq!(receive(&mut events, 2).await, ["b", "c"], "the new file is followed");
        let cut = tokio::time::timeout(Duration::from_secs(5), dead.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(cut.message.payload, b"{\"kind\":\"Ev", "the unfinished line is dead-lettered, not lost");
        stop.trigger();
        task.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_backlog_larger_than_one_read_arrives_whole_and_in_order() {
        let dir = fresh_dir("backlog");
        let log = dir.join("audit.log");
        let ids: Vec<String> = (0..15_000).map(|i| format!("id-{i}")).collect();
        append(&log, &ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(std::fs::metadata(&log).unwrap().len() > 2 * READ_CHUNK_BYTES, "several reads");
        let bus = Bus::in_process();
        let mut events = bus.subscribe(&["audit"], "t").unwrap();
        let (stop, task) = start(&dir, &bus).await;
        assert_eq!(receive(&mut events, ids.len()).await, ids);
        stop.trigger();
        task.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn cloud_files_carry_cloudtrail_and_azure_records_and_dead_letter_the_rest() {
        let dir = fresh_dir("cloud");
        let path = dir.join("cloud.jsonl");
        let bus = Bus::in_process();
        let mut records = bus.subscribe(&["cloud"], "t").unwrap();
        let mut dead = bus.subscribe(&["dlq"], "t").unwrap();
        let trail = r#"{"Records":[{"eventID":"t1","eventTime":"2026-11-27T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/s","principalId":"A:s","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/r"},"webIdFederationData":{"federatedProvider":"oidc"}}}},{"eventID":"t2","eventTime":"2026-11-27T10:00:01Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::1:user/bob"}}]}"#;
        let azure = r#"{"time":"2026-11-27T10:00:02Z","operationName":"MICROSOFT.COMPUTE/DISKS/WRITE","correlationId":"c","identity":{"claims":{"xms_mirid":"/x","oid":"mi-1"}}}"#;
        std::fs::write(&path, format!("{trail}\n{{\"kind\":\"nothing\"}}\n{azure}\n")).unwrap();
        let tailer = Tailer::new(
            &path,
            &dir.join("positions"),
            "c",
            "cloud",
            "dlq",
            Duration::from_millis(20),
            LineFormat::Cloud,
        );
        let shutdown = Shutdown::new();
        let task = tokio::spawn(tailer.run(bus.clone(), shutdown.clone()));
        let codec = Codec::<CloudActivity>::new().unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let delivery =
                tokio::time::timeout(Duration::from_secs(5), records.next()).await.unwrap().unwrap().unwrap();
            let record = codec.decode(&delivery.message.payload).unwrap();
            got.push((record.id, record.identity_type.unwrap_or_default(), record.operation));
        }
        assert_eq!(got[0], ("t1".into(), "WebIdentity".into(), "s3:GetObject".into()));
        assert_eq!(got[1], ("t2".into(), "IAMUser".into(), "s3:PutObject".into()));
        assert_eq!((got[2].1.as_str(), got[2].2.as_str()), ("ManagedIdentity", "MICROSOFT.COMPUTE/DISKS/WRITE"));
        let bad = tokio::time::timeout(Duration::from_secs(5), dead.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(bad.message.payload, br#"{"kind":"nothing"}"#);
        shutdown.trigger();
        task.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
