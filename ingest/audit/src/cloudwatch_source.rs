//! Audit events read from CloudWatch Logs, as EKS delivers them: with control-plane logging on, the API server's
//! audit log goes to the log group `/aws/eks/<cluster>/cluster`, streams `kube-apiserver-audit-<id>`, one
//! `audit.k8s.io` Event per log event. The source polls the group with FilterLogEvents (credentials from the AWS
//! SDK's standard chain: IRSA's web identity, EKS Pod Identity, environment, profile, instance metadata) and
//! publishes each event to `palisade.audit.events`; a log event that is no audit Event is dead-lettered with the
//! reason, and events of other streams of the group (the API server's own log, the authenticator) are counted and
//! passed over.
//!
//! CloudWatch Logs has no offsets, and an event may be stored after later ones (its timestamp is the API
//! server's, its arrival the delivery's). The position is therefore the newest timestamp handled (the high
//! water, never ahead of the local clock) and the events handled within `late_arrival_secs` of it. A poll reads
//! from a little before the high water (`QUICK_OVERLAP`); every `late_arrival_secs / 2` one reads again from
//! `high water - late_arrival_secs`; both pass over what was handled. An event stored later than that behind the
//! newest one of any stream is missed; the window trades that against the calls spent reading it again. The
//! position is saved in `audit.log_position_dir`, so a restart resumes without repeating or skipping what was
//! acknowledged.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::DisplayErrorContext;
use aws_sdk_cloudwatchlogs::types::FilteredLogEvent;
use palisade_runtime::{Bus, Message, Shutdown};
use palisade_schemas::Codec;
use palisade_schemas::managed_audit::{self as managed, Envelope};
use palisade_telemetry::{ComponentStarted, ComponentStopped, ComponentWaiting, MessageProcessed, RecordsSkipped};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::forward::{Forwarder, write_atomically};

/// `[[audit.cloudwatch_sources]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchSourceConfig {
    /// Names the source in metrics and logs, and its position file.
    pub name: String,
    /// The log group: for EKS `/aws/eks/<cluster>/cluster`.
    pub log_group: String,
    /// Only streams whose name starts with this are read (EKS: `kube-apiserver-audit`).
    #[serde(default = "default_stream_prefix")]
    pub stream_prefix: String,
    /// The AWS region; absent: the SDK's chain (`AWS_REGION`, the profile, instance metadata).
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint for CloudWatch Logs (a VPC endpoint with its own name, a test server); absent: the
    /// region's (`AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` is honoured too).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The cluster name its events carry; absent: the one the EKS log group names, else the configured `cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// How often the group is read, in milliseconds (FilterLogEvents allows a few calls a second per account).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How late an event may be stored and still be read, in seconds (see the module's text).
    #[serde(default = "default_late_arrival_secs")]
    pub late_arrival_secs: u64,
    /// On the first start (no position yet), how far back to read, in seconds.
    #[serde(default = "default_initial_lookback_secs")]
    pub initial_lookback_secs: u64,
}

fn default_stream_prefix() -> String {
    "kube-apiserver-audit".to_owned()
}
const fn default_poll_interval_ms() -> u64 {
    10_000
}
const fn default_late_arrival_secs() -> u64 {
    120
}
const fn default_initial_lookback_secs() -> u64 {
    3_600
}

impl CloudWatchSourceConfig {
    pub fn validate(&self) -> Result<(), String> {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.name.is_empty() || !self.name.chars().all(valid) {
            return Err(format!("name `{}` must be letters, digits, `-` or `_`", self.name));
        }
        if self.log_group.is_empty() {
            return Err(format!("source `{}` needs a log_group", self.name));
        }
        if self.stream_prefix.is_empty() {
            return Err(format!(
                "source `{}`: stream_prefix is empty, so every stream of the group (the API server's own log, the \
                 authenticator's) would be read as audit events",
                self.name
            ));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(format!("source `{}`: endpoint_url `{url}` must start with https:// or http://", self.name));
        }
        if self.poll_interval_ms < 100 {
            return Err(format!("source `{}`: poll_interval_ms must be at least 100", self.name));
        }
        // Longer than CloudWatch's own bound on late events (14 days) means nothing more.
        if self.late_arrival_secs > 14 * 86_400 || self.initial_lookback_secs > 14 * 86_400 {
            return Err(format!(
                "source `{}`: late_arrival_secs and initial_lookback_secs are at most 14 days (1209600)",
                self.name
            ));
        }
        Ok(())
    }

    /// The metrics and health name of this source.
    pub fn stage(&self) -> String {
        format!("audit-cloudwatch-{}", self.name)
    }

    /// The cluster its events carry: the configured one, else the one an EKS log group names.
    pub fn cluster(&self) -> Option<String> {
        self.cluster.clone().or_else(|| {
            let name = self.log_group.strip_prefix("/aws/eks/")?.strip_suffix("/cluster")?;
            (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
        })
    }

    fn position_file(&self, dir: &Path) -> PathBuf {
        dir.join(format!("cloudwatch-{}.json", self.name))
    }
}

/// A CloudWatch Logs client for this source: the SDK's credential and region chains, HTTPS by rustls with ring.
pub async fn client(config: &CloudWatchSourceConfig) -> Result<Client, String> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_secs(90))
        .build();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).timeout_config(timeouts);
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err("no AWS region: set `region` or AWS_REGION".into());
    }
    let mut builder = aws_sdk_cloudwatchlogs::config::Builder::from(&shared);
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
}

/// At most this many handled events are remembered (about 100 MB; 16 000 events a second in a two-minute window).
/// Past it the oldest timestamps are forgotten and reads no longer start before them: an event stored that late
/// is then missed (logged), rather than the forgotten ones sent again at every poll.
const MAX_REMEMBERED: usize = 2_000_000;
/// How far before the high water the polls between two window reads start.
const QUICK_OVERLAP_MS: i64 = 10_000;
/// The longest pause before a failed page is asked for again (the backoff doubles from one second).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often one page is asked for before the poll gives up (a token that expired fails for good): about a
/// minute and a half of backoff.
const PAGE_ATTEMPTS: u32 = 6;
/// While a long backlog is read page by page, the position is saved this often.
const SAVE_EVERY: Duration = Duration::from_secs(10);
/// A failing source is reported in the log this often at most.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Where reading stands: see the module's text.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    log_group: String,
    /// The newest event timestamp handled, in milliseconds (never ahead of the clock when it was handled); 0: none.
    high_water_ms: i64,
    /// (timestamp, key) of the events handled at or after `high_water_ms - late`.
    handled: BTreeSet<(i64, u64)>,
    /// Reads start no earlier than this: what is before it was forgotten to stay under `MAX_REMEMBERED`.
    #[serde(default)]
    floor_ms: i64,
}

impl Position {
    /// Where the next read starts, reading `late_ms` behind the high water.
    fn start_ms(&self, now_ms: i64, late_ms: i64, lookback_ms: i64) -> i64 {
        let start = if self.high_water_ms == 0 { now_ms - lookback_ms } else { self.high_water_ms - late_ms };
        start.max(self.floor_ms).max(0)
    }

    fn is_handled(&self, timestamp: i64, key: u64) -> bool {
        self.handled.contains(&(timestamp, key))
    }

    /// Records an event as handled. A timestamp ahead of the clock does not move the high water past the clock:
    /// one such event would otherwise move the next reads past everything stored meanwhile.
    fn record(&mut self, timestamp: i64, key: u64, now_ms: i64) {
        self.handled.insert((timestamp, key));
        self.high_water_ms = self.high_water_ms.max(timestamp.min(now_ms));
    }

    /// Forgets what the next reads no longer cover. Over `limit`, forgets the oldest timestamps whole and moves
    /// the floor past them (a forgotten event must not be read again); returns how many were forgotten early.
    fn prune(&mut self, late_ms: i64, limit: usize) -> usize {
        self.handled = self.handled.split_off(&(self.high_water_ms - late_ms, 0));
        let over = self.handled.len().saturating_sub(limit);
        let Some(&(cut, _)) = self.handled.iter().nth(over.saturating_sub(1)).filter(|_| over > 0) else { return 0 };
        let before = self.handled.len();
        self.handled = self.handled.split_off(&(cut + 1, 0));
        self.floor_ms = self.floor_ms.max(cut + 1);
        before - self.handled.len()
    }
}

/// A log event's identity within the group: its stream and ID (CloudWatch's IDs are unique per group; the stream
/// is added in case), as 64 bits of SHA-256.
fn event_key(stream: &str, event: &FilteredLogEvent) -> u64 {
    let mut hash = Sha256::new();
    hash.update(stream.as_bytes());
    hash.update([0]);
    match event.event_id() {
        Some(id) => hash.update(id.as_bytes()),
        None => {
            hash.update(event.timestamp().unwrap_or_default().to_be_bytes());
            hash.update(event.message().unwrap_or_default().as_bytes());
        }
    }
    u64::from_be_bytes(hash.finalize()[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A running source.
pub struct CloudWatchSource {
    config: CloudWatchSourceConfig,
    client: Client,
    forwarder: Forwarder,
    /// The cluster when neither the configuration nor the log group names one.
    fallback_cluster: String,
    position_file: PathBuf,
    position: Position,
}

impl CloudWatchSource {
    pub fn new(
        config: CloudWatchSourceConfig,
        client: Client,
        position_dir: &Path,
        cluster: &str,
        topics: &palisade_runtime::TopicsConfig,
    ) -> Result<Self, palisade_schemas::CodecError> {
        let position_file = config.position_file(position_dir);
        let position = match std::fs::read(&position_file) {
            Ok(bytes) => match serde_json::from_slice::<Position>(&bytes) {
                Ok(position) if position.log_group == config.log_group => position,
                Ok(_) => {
                    tracing::warn!(source = %config.name, "the saved position is another log group's; starting anew");
                    Position::default()
                }
                Err(error) => {
                    // Kept for a look: the first save would write over it.
                    let aside = position_file.with_extension(format!("corrupt-{}", now_ms()));
                    let _ = std::fs::rename(&position_file, &aside);
                    tracing::error!(source = %config.name, %error, moved_to = %aside.display(),
                        "the saved position cannot be read; moved aside, starting from initial_lookback_secs");
                    Position::default()
                }
            },
            Err(_) => Position::default(),
        };
        let position = Position { log_group: config.log_group.clone(), ..position };
        Ok(Self {
            forwarder: Forwarder {
                name: config.name.clone(),
                stage: config.stage(),
                audit_topic: topics.audit_events.clone(),
                dead_letter_topic: topics.dead_letter.clone(),
                codec: Codec::new()?,
            },
            fallback_cluster: cluster.to_owned(),
            position_file,
            position,
            config,
            client,
        })
    }

    /// Builds the client and reads until shutdown; settings that cannot work (no region) are logged and the
    /// source stays stopped, an unreachable or refusing CloudWatch is tried again at every poll. Never stops the
    /// webhook or the other sources.
    pub async fn serve(
        config: CloudWatchSourceConfig,
        position_dir: PathBuf,
        cluster: String,
        topics: palisade_runtime::TopicsConfig,
        bus: Bus,
        shutdown: Shutdown,
    ) {
        let name = config.name.clone();
        let built = tokio::select! { built = client(&config) => built, _ = shutdown.wait() => return };
        let source = built.and_then(|client| {
            Self::new(config, client, &position_dir, &cluster, &topics).map_err(|error| error.to_string())
        });
        match source {
            Ok(source) => source.run(bus, shutdown).await,
            Err(error) => {
                tracing::error!(source = %name, %error, "audit CloudWatch source cannot run with these settings; it stays stopped");
            }
        }
    }

    /// Polls until shutdown, then saves the position of what was acknowledged.
    pub async fn run(mut self, bus: Bus, shutdown: Shutdown) {
        tracing::info!(source = %self.config.name, log_group = %self.config.log_group,
            stream_prefix = %self.config.stream_prefix, "audit CloudWatch source started");
        ComponentWaiting { component: &self.forwarder.stage }.emit();
        let mut up = false;
        let mut warned: Option<Instant> = None;
        let mut window_read: Option<Instant> = None;
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        while !shutdown.is_triggered() {
            // The whole window now and then, else from just before the high water.
            let half_window = Duration::from_secs(self.config.late_arrival_secs / 2);
            let whole = window_read.is_none_or(|at| at.elapsed() >= half_window);
            let started = Instant::now();
            match self.poll(&bus, whole, &shutdown).await {
                Ok(()) => {
                    if whole {
                        window_read = Some(started);
                    }
                    if !up {
                        ComponentStarted { component: &self.forwarder.stage }.emit();
                        up = true;
                    }
                }
                // Throttling, an expired credential, a group not created yet: the SDK retried already; logged (every
                // 30 s at most) and tried at the next poll. Not reported to /healthz, whose failure would restart
                // the webhook with it; `palisade_component_up` shows it.
                Err(error) => {
                    if up {
                        ComponentStopped { component: &self.forwarder.stage }.emit();
                        up = false;
                    }
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        tracing::warn!(source = %self.config.name, %error, "reading the CloudWatch log group failed");
                        warned = Some(Instant::now());
                    }
                }
            }
            tokio::select! { _ = tokio::time::sleep(poll) => {}, _ = shutdown.wait() => {} }
        }
        if up {
            ComponentStopped { component: &self.forwarder.stage }.emit();
        }
        self.report_save(save(&self.position_file, &self.position));
    }

    /// Reads every page from the start of the window (`whole`) or from just before the high water, forwarding what
    /// was not handled yet. A page that cannot be had is asked for again with the same token (a throttled read
    /// does not start over), `PAGE_ATTEMPTS` times in all; an error before the first page, or the last attempt's,
    /// ends the poll. Returns early (Ok) at shutdown, leaving
    /// the page being forwarded unrecorded: it is read again after the restart.
    async fn poll(&mut self, bus: &Bus, whole: bool, shutdown: &Shutdown) -> Result<(), String> {
        let late_ms = self.config.late_arrival_secs as i64 * 1000;
        let behind = if whole { late_ms } else { late_ms.min(QUICK_OVERLAP_MS) };
        let start = self.position.start_ms(now_ms(), behind, self.config.initial_lookback_secs as i64 * 1000);
        let mut token: Option<String> = None;
        let mut saved_at = Instant::now();
        let mut backoff = Duration::from_secs(1);
        let mut attempts = 0;
        loop {
            let request = self
                .client
                .filter_log_events()
                .log_group_name(&self.config.log_group)
                .log_stream_name_prefix(&self.config.stream_prefix)
                .start_time(start)
                .set_next_token(token.clone())
                .send();
            let page = tokio::select! {
                page = request => page.map_err(|e| DisplayErrorContext(e).to_string()),
                _ = shutdown.wait() => return Ok(()),
            };
            let page = match page {
                Ok(page) => page,
                Err(error) if token.is_none() => return Err(error),
                Err(error) if attempts + 1 >= PAGE_ATTEMPTS => {
                    self.prune_and_save(late_ms).await;
                    return Err(format!("a page failed {PAGE_ATTEMPTS} times: {error}"));
                }
                Err(error) => {
                    attempts += 1;
                    tracing::warn!(source = %self.config.name, %error, retry_in = ?backoff,
                        "reading a page of the CloudWatch log group failed; asking for it again");
                    tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.wait() => return Ok(()) }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            (backoff, attempts) = (Duration::from_secs(1), 0);
            if !self.forward_page(bus, page.events(), shutdown).await {
                return Ok(());
            }
            // An empty token ends the pages as an absent one does.
            token = page.next_token.filter(|t| !t.is_empty());
            if token.is_none() || shutdown.is_triggered() {
                break;
            }
            if saved_at.elapsed() >= SAVE_EVERY {
                self.prune_and_save(late_ms).await;
                saved_at = Instant::now();
            }
        }
        self.prune_and_save(late_ms).await;
        Ok(())
    }

    /// Forwards a page's new audit events, all at once, and records them; false when shutdown came first.
    async fn forward_page(&mut self, bus: &Bus, events: &[FilteredLogEvent], shutdown: &Shutdown) -> bool {
        let mut fresh = Vec::new();
        let mut other_streams = Vec::new();
        let mut keys = HashSet::new();
        for event in events {
            let stream = event.log_stream_name().unwrap_or_default();
            let (timestamp, key) = (event.timestamp().unwrap_or_default(), event_key(stream, event));
            if self.position.is_handled(timestamp, key) || !keys.insert(key) {
                continue;
            }
            // CloudWatch filters by the prefix already; a server that does not (or a stream renamed) is checked
            // here. Recorded as handled, so a line read again in the window is counted once.
            if stream.starts_with(&self.config.stream_prefix) {
                fresh.push((timestamp, key, stream, event));
            } else {
                other_streams.push((timestamp, key));
            }
        }
        if !other_streams.is_empty() {
            let count = other_streams.len() as u64;
            RecordsSkipped { stage: &self.forwarder.stage, reason: "other stream", count }.emit();
        }
        let this = &*self;
        let forwarded =
            fresh.iter().map(|(timestamp, _, stream, event)| this.forward(bus, stream, *timestamp, event, shutdown));
        if !futures::future::join_all(forwarded).await.into_iter().all(|delivered| delivered) {
            return false;
        }
        let now = now_ms();
        for (timestamp, key) in fresh.into_iter().map(|(timestamp, key, _, _)| (timestamp, key)).chain(other_streams) {
            self.position.record(timestamp, key, now);
        }
        true
    }

    /// Publishes one log event's audit events, or dead-letters it; false when shutdown came first.
    async fn forward(
        &self,
        bus: &Bus,
        stream: &str,
        timestamp: i64,
        event: &FilteredLogEvent,
        shutdown: &Shutdown,
    ) -> bool {
        let payload = event.message().unwrap_or_default().as_bytes();
        let message = Message {
            topic: format!("cloudwatch:{}", self.config.log_group),
            partition: -1,
            offset: timestamp,
            key: Some(format!("{stream}/{}", event.event_id().unwrap_or_default()).into_bytes()),
            payload: payload.to_vec(),
            headers: Vec::new(),
            timestamp_ms: Some(timestamp),
        };
        let delivered = match managed::unwrap(Envelope::Audit, payload) {
            Ok(contents) => {
                let cluster = self.config.cluster();
                let fallback = &self.fallback_cluster;
                self.forwarder.forward(bus, contents, &message, cluster.as_deref(), fallback, shutdown).await
            }
            Err(reason) => self.forwarder.dead_letter(bus, &message, &reason, shutdown).await,
        };
        if delivered {
            MessageProcessed { stage: &self.forwarder.stage }.emit();
        }
        delivered
    }

    async fn prune_and_save(&mut self, late_ms: i64) {
        let forgotten = self.position.prune(late_ms, MAX_REMEMBERED);
        if forgotten > 0 {
            tracing::warn!(source = %self.config.name, forgotten, limit = MAX_REMEMBERED, floor_ms = self.position.floor_ms,
                "more events in the late-arrival window than are remembered: events stored later than the floor are missed");
        }
        self.save_off_runtime().await;
    }

    /// Saves the position from a blocking thread (a full window is tens of megabytes flushed to disk).
    async fn save_off_runtime(&self) {
        let (file, position) = (self.position_file.clone(), self.position.clone());
        let saved = tokio::task::spawn_blocking(move || save(&file, &position)).await;
        self.report_save(saved.unwrap_or_else(|e| Err(std::io::Error::other(e))));
    }

    fn report_save(&self, saved: std::io::Result<()>) {
        if let Err(error) = saved {
            // Not fatal: the position is kept in memory and saved again after the next poll.
            tracing::error!(source = %self.config.name, %error, file = %self.position_file.display(),
                "cannot save the CloudWatch position");
        }
    }
}

fn save(file: &Path, position: &Position) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(position).map_err(std::io::Error::other)?;
    write_atomically(file, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(log_group: &str) -> CloudWatchSourceConfig {
        serde_json::from_value(serde_json::json!({ "name": "eks", "log_group": log_group })).unwrap()
    }

    #[test]
    fn the_eks_log_group_names_the_cluster_unless_one_is_configured() {
        assert_eq!(config("/aws/eks/prod-1/cluster").cluster().as_deref(), Some("prod-1"));
        assert_eq!(config("/aws/eks/a/b/cluster").cluster(), None, "not an EKS group's shape");
        assert_eq!(config("/custom/audit").cluster(), None);
        let named = CloudWatchSourceConfig { cluster: Some("mine".into()), ..config("/aws/eks/prod-1/cluster") };
        assert_eq!(named.cluster().as_deref(), Some("mine"));
        assert_eq!(config("/g").stream_prefix, "kube-apiserver-audit");
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert!(config("/aws/eks/c/cluster").validate().is_ok());
        for broken in [
            CloudWatchSourceConfig { name: "a b".into(), ..config("/g") },
            CloudWatchSourceConfig { stream_prefix: String::new(), ..config("/g") },
            CloudWatchSourceConfig { endpoint_url: Some("localhost:4566".into()), ..config("/g") },
            CloudWatchSourceConfig { poll_interval_ms: 0, ..config("/g") },
            CloudWatchSourceConfig { late_arrival_secs: 30 * 86_400, ..config("/g") },
            config(""),
        ] {
            assert!(broken.validate().is_err(), "{broken:?}");
        }
    }

    #[test]
    fn the_window_reads_late_events_once_and_forgets_what_it_no_longer_covers() {
        let mut position = Position::default();
        let (now, late) = (1_000_000, 60_000);
        assert_eq!(position.start_ms(now, late, 3_600_000), 0, "the look-back, not before the epoch");
        assert_eq!(position.start_ms(now * 10, late, 3_600_000), now * 10 - 3_600_000);
        position.record(900_000, 1, now);
        position.record(950_000, 2, now);
        assert_eq!(position.start_ms(now, late, 0), 890_000, "the window before the high water");
        // Arrived late, behind the high water but inside the window: new; the same event again: handled.
        assert!(!position.is_handled(920_000, 3));
        position.record(920_000, 3, now);
        assert!(position.is_handled(920_000, 3));
        assert_eq!(position.high_water_ms, 950_000, "a late event does not move the high water back");
        // An event ahead of the clock does not move the high water past it.
        position.record(5_000_000, 4, now);
        assert_eq!(position.high_water_ms, now);
        assert_eq!(position.prune(late, MAX_REMEMBERED), 0);
        let kept: Vec<u64> = position.handled.iter().map(|(_, key)| *key).collect();
        // The window now starts at 940 000: events 1 and 3 are before it, never read again, so forgotten.
        assert_eq!(kept, [2, 4], "what is older than the window is forgotten, the future event is kept");
    }

    #[test]
    fn over_the_bound_the_oldest_timestamps_are_forgotten_whole_and_never_read_again() {
        let mut position = Position::default();
        for (timestamp, key) in [(100, 1), (100, 2), (200, 3), (300, 4), (300, 5)] {
            position.record(timestamp, key, i64::MAX);
        }
        // Three may be kept: the two of 100 go, and reads start after 100.
        assert_eq!(position.prune(1_000, 3), 2);
        assert_eq!(position.floor_ms, 101);
        assert_eq!(position.handled.iter().map(|(_, k)| *k).collect::<Vec<_>>(), [3, 4, 5]);
        // Two may be kept: forgetting the one of 200 is enough.
        assert_eq!(position.prune(1_000, 2), 1);
        assert_eq!(position.handled.iter().map(|(_, k)| *k).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(position.floor_ms, 201);
        assert_eq!(position.start_ms(0, 1_000, 0), 201, "no read starts before what was forgotten");
    }

    #[test]
    fn the_position_survives_a_round_trip_through_its_file() {
        let mut position = Position { log_group: "/aws/eks/c/cluster".into(), ..Position::default() };
        position.record(1_700_000_000_000, u64::MAX, i64::MAX);
        let text = serde_json::to_vec(&position).unwrap();
        assert_eq!(serde_json::from_slice::<Position>(&text).unwrap(), position);
    }
}
