//! The node's CRI runtime (containerd, CRI-O, cri-dockerd) asked for what the cgroup path cannot say: the
//! container's name, its image and its pod's name and namespace. gRPC `RuntimeService/ContainerStatus` over the
//! runtime's unix socket (HTTP/2; the few protobuf fields read are decoded here, the request encoded here).
//! Optional: without a socket, node events carry what the cgroup path gives, and enrich's pod watch completes them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_schemas::NodeEvent;

/// Where kubelets find their runtime, in the order tried when `collect.cri_socket` is not set.
pub const DEFAULT_SOCKETS: [&str; 5] = [
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/cri-dockerd.sock",
    "/var/run/cri-dockerd.sock",
];

/// CRI API versions, newest first: containerd 1.6+ and CRI-O 1.23+ serve v1; older runtimes only v1alpha2 (the
/// two versions' ContainerStatus messages have the same field numbers).
const SERVICES: [&str; 2] = ["runtime.v1.RuntimeService", "runtime.v1alpha2.RuntimeService"];

/// gRPC status codes this client acts on.
const GRPC_OK: u32 = 0;
const GRPC_NOT_FOUND: u32 = 5;
const GRPC_UNIMPLEMENTED: u32 = 12;

/// Largest ContainerStatus answer accepted (it holds mounts, labels and annotations; 4 MiB is gRPC's default).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// What the runtime says of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriContainer {
    pub name: Option<String>,
    pub image: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot connect to the CRI socket {path}: {source}; check collect.cri_socket and the socket's mount")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/2 to the CRI socket {path} failed: {reason}")]
    Transport { path: String, reason: String },
    #[error("the CRI runtime at {path} answered {method} with gRPC status {code} ({message})")]
    Status { path: String, method: String, code: u32, message: String },
    #[error("the CRI runtime at {path} sent an undecodable ContainerStatus answer: {reason}")]
    Decode { path: String, reason: String },
}

/// A gRPC client of one runtime socket. The HTTP/2 connection is opened on first use and again after it fails.
pub struct CriClient {
    path: PathBuf,
    connection: Option<SendRequest<Full<Bytes>>>,
    /// Index into `SERVICES` of the API version the runtime answered.
    service: usize,
}

impl CriClient {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), connection: None, service: 0 }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, CriError> {
        if let Some(connection) = &self.connection
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        let path = self.path.display().to_string();
        let stream = tokio::net::UnixStream::connect(&self.path)
            .await
            .map_err(|source| CriError::Connect { path: path.clone(), source })?;
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| CriError::Transport { path, reason: e.to_string() })?;
        tokio::spawn(async move {
            // Ends when the runtime closes the connection or the sender is dropped; the next call reconnects.
            let _ = connection.await;
        });
        self.connection = Some(sender.clone());
        Ok(sender)
    }

    /// The container's name, image and pod; `Ok(None)` when the runtime does not know the id.
    pub async fn container_status(&mut self, container_id: &str) -> Result<Option<CriContainer>, CriError> {
        loop {
            match self.call(SERVICES[self.service], container_id).await {
                Err(CriError::Status { code: GRPC_UNIMPLEMENTED, .. }) if self.service + 1 < SERVICES.len() => {
                    self.service += 1;
                }
                Err(CriError::Status { code: GRPC_NOT_FOUND, .. }) => return Ok(None),
                Err(error) => return Err(error),
                Ok(message) => {
                    return decode_container_status_response(&message)
                        .map(Some)
                        .map_err(|reason| CriError::Decode { path: self.path.display().to_string(), reason });
                }
            }
        }
    }

    async fn call(&mut self, service: &str, container_id: &str) -> Result<Vec<u8>, CriError> {
        let path = self.path.display().to_string();
        let method = format!("/{service}/ContainerStatus");
        let mut sender = self.connect().await?;
        let transport = |reason: String| CriError::Transport { path: path.clone(), reason };
        sender.ready().await.map_err(|e| transport(e.to_string()))?;
        let request = hyper::Request::post(format!("http://localhost{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(grpc_frame(&encode_container_status_request(container_id)))))
            .map_err(|e| transport(e.to_string()))?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(error) => {
                self.connection = None;
                return Err(transport(error.to_string()));
            }
        };
        let (parts, body) = response.into_parts();
        if parts.status != hyper::StatusCode::OK {
            return Err(transport(format!("HTTP status {}", parts.status)));
        }
        let collected = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the answer: {e}")))?;
        // A gRPC error may come as headers only ("trailers-only"), else the status is in the trailers.
        let status_from = |headers: &hyper::HeaderMap| {
            let code = headers.get("grpc-status")?.to_str().ok()?.parse::<u32>().ok()?;
            let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default().to_owned();
            Some((code, message))
        };
        let trailers = collected.trailers().cloned();
        let (code, message) = trailers
            .as_ref()
            .and_then(status_from)
            .or_else(|| status_from(&parts.headers))
            .ok_or_else(|| transport("the answer has no grpc-status".into()))?;
        if code != GRPC_OK {
            return Err(CriError::Status { path, method, code, message });
        }
        read_grpc_frame(&collected.to_bytes()).map_err(|reason| CriError::Decode { path, reason })
    }
}

/// The first socket of `candidates` that exists.
pub fn find_socket(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|path| path.exists())
}

// ---- gRPC framing and the protobuf fields read ----------------------------------------------------------------

fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0); // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// A whole answer body as the client reads it: the gRPC frame, then the ContainerStatus message in it.
pub(crate) fn decode_answer(body: &[u8]) {
    if let Ok(message) = read_grpc_frame(body) {
        let _ = decode_container_status_response(&message);
    }
    let _ = decode_container_status_response(body);
}

fn read_grpc_frame(body: &[u8]) -> Result<Vec<u8>, String> {
    let Some((&compressed, rest)) = body.split_first() else { return Err("an empty answer".into()) };
    if compressed != 0 {
        return Err("a compressed message (none was asked for)".into());
    }
    let length = rest.get(..4).ok_or("a cut frame header")?;
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    rest.get(4..4 + length).map(<[u8]>::to_vec).ok_or_else(|| format!("a frame of {length} bytes cut short"))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `ContainerStatusRequest { string container_id = 1; bool verbose = 2; }` with verbose false (omitted).
fn encode_container_status_request(container_id: &str) -> Vec<u8> {
    let mut out = vec![0x0A];
    put_varint(&mut out, container_id.len() as u64);
    out.extend_from_slice(container_id.as_bytes());
    out
}

/// One protobuf field: its number and, for the wire types read here, its value.
enum Value<'a> {
    Varint,
    Bytes(&'a [u8]),
    Fixed,
}

/// Walks the fields of one protobuf message.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or("a cut varint")?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than ten bytes".into())
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < length {
            return Err(format!("a field of {length} bytes with {} left", self.bytes.len()));
        }
        let (head, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(head)
    }

    fn next_field(&mut self) -> Option<Result<(u64, Value<'a>), String>> {
        if self.bytes.is_empty() {
            return None;
        }
        Some(self.varint().and_then(|key| {
            let value = match key & 7 {
                0 => self.varint().map(|_| Value::Varint)?,
                1 => self.take(8).map(|_| Value::Fixed)?,
                2 => {
                    let length = usize::try_from(self.varint()?).map_err(|_| "a length beyond memory")?;
                    Value::Bytes(self.take(length)?)
                }
                5 => self.take(4).map(|_| Value::Fixed)?,
                wire => return Err(format!("wire type {wire} (groups are not used by the CRI API)")),
            };
            Ok((key >> 3, value))
        }))
    }
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string that is not UTF-8".to_owned())
}

/// Calls `each` with (field number, bytes) of every length-delimited field of `message`.
fn for_each_bytes_field(message: &[u8], mut each: impl FnMut(u64, &[u8]) -> Result<(), String>) -> Result<(), String> {
    let mut fields = Fields { bytes: message };
    while let Some(field) = fields.next_field() {
        if let (number, Value::Bytes(bytes)) = field? {
            each(number, bytes)?;
        }
    }
    Ok(())
}

/// `ContainerStatusResponse { ContainerStatus status = 1; ... }` where `ContainerStatus { ContainerMetadata
/// metadata = 2 (name = 1); ImageSpec image = 8 (image = 1); string image_ref = 9; map<string, string> labels = 12;
/// ... }`. The pod comes from the labels the kubelet sets on every container it creates.
fn decode_container_status_response(message: &[u8]) -> Result<CriContainer, String> {
    let mut container = CriContainer::default();
    let mut image_ref = None;
    for_each_bytes_field(message, |number, status| {
        if number != 1 {
            return Ok(());
        }
        for_each_bytes_field(status, |number, value| {
            match number {
                2 => for_each_bytes_field(value, |number, name| {
                    if number == 1 {
                        container.name = Some(text(name)?);
                    }
                    Ok(())
                })?,
                8 => for_each_bytes_field(value, |number, image| {
                    if number == 1 {
                        container.image = Some(text(image)?);
                    }
                    Ok(())
                })?,
                9 => image_ref = Some(text(value)?),
                12 => {
                    let (mut key, mut entry) = (String::new(), String::new());
                    for_each_bytes_field(value, |number, part| {
                        match number {
                            1 => key = text(part)?,
                            2 => entry = text(part)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    match key.as_str() {
                        "io.kubernetes.pod.name" => container.pod_name = Some(entry),
                        "io.kubernetes.pod.namespace" => container.pod_namespace = Some(entry),
                        "io.kubernetes.pod.uid" => container.pod_uid = Some(entry),
                        _ => {}
                    }
                }
                _ => {}
            }
            Ok(())
        })
    })?;
    // Runtimes name the image by its tag where they know one; an image ID is the fallback, then the digest.
    if container.image.as_deref().is_none_or(str::is_empty) {
        container.image = image_ref;
    }
    container.image = container.image.filter(|image| !image.is_empty());
    container.name = container.name.filter(|name| !name.is_empty());
    Ok(container)
}

// ---- the resolver the collect stage uses ------------------------------------------------------------------------

/// How one event's container was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Answered from the cache (found or known missing).
    Cached,
    Found,
    /// The runtime does not know the container (a runc container not made through the CRI, say).
    NotFound,
    Failed,
    /// Not asked: the runtime failed a moment ago and is left alone for a back-off period, so a runtime that
    /// hangs costs one timeout per period, not one per new container.
    Skipped,
}

impl Lookup {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::Found => "found",
            Self::NotFound => "not_found",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

enum Cached {
    Found(Arc<CriContainer>),
    /// Not known to the runtime at this instant; asked again after `retry_after`.
    Missing(Instant),
}

/// Back-off after a failed call: the first pause, and the longest (doubling in between).
const FIRST_PAUSE: Duration = Duration::from_secs(2);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// Fills node events' CRI fields, one runtime call per container (answers cached; bounded).
pub struct CriResolver {
    client: CriClient,
    timeout: Duration,
    retry_after: Duration,
    max_entries: usize,
    cache: HashMap<String, Cached>,
    /// Whether the last call failed, so a failure is logged when it starts, not on every event.
    failing: bool,
    /// While failing: no call before this instant, and the pause the next failure starts.
    paused_until: Option<Instant>,
    next_pause: Duration,
}

impl CriResolver {
    pub fn new(client: CriClient, timeout: Duration, max_entries: usize) -> Self {
        Self {
            client,
            timeout,
            retry_after: Duration::from_secs(30),
            max_entries: max_entries.max(1),
            cache: HashMap::new(),
            failing: false,
            paused_until: None,
            next_pause: FIRST_PAUSE,
        }
    }

    pub fn socket(&self) -> &Path {
        self.client.path()
    }

    /// Adds the container's name, image and pod to `event` when it ran in a container the runtime knows. Fields
    /// the cgroup path already gave (the pod UID) are kept. `None` for an event outside any container.
    pub async fn fill(&mut self, event: &mut NodeEvent) -> Option<Lookup> {
        let container_id = event.container_id.as_deref()?;
        let (container, lookup) = match self.cache.get(container_id) {
            Some(Cached::Found(container)) => (Some(Arc::clone(container)), Lookup::Cached),
            Some(Cached::Missing(at)) if at.elapsed() < self.retry_after => (None, Lookup::Cached),
            _ if self.paused_until.is_some_and(|until| Instant::now() < until) => (None, Lookup::Skipped),
            _ => {
                let container_id = container_id.to_owned();
                let answer = tokio::time::timeout(self.timeout, self.client.container_status(&container_id)).await;
                let entry = match answer {
                    Ok(Ok(Some(container))) => Ok(Cached::Found(Arc::new(container))),
                    Ok(Ok(None)) => Ok(Cached::Missing(Instant::now())),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => {
                        // A call cut off mid-stream leaves the connection unusable; open a new one next time.
                        self.client.connection = None;
                        Err(format!("no answer within {} ms", self.timeout.as_millis()))
                    }
                };
                match entry {
                    Ok(entry) => {
                        self.answered();
                        let (container, lookup) = match &entry {
                            Cached::Found(container) => (Some(Arc::clone(container)), Lookup::Found),
                            Cached::Missing(_) => (None, Lookup::NotFound),
                        };
                        self.make_room();
                        self.cache.insert(container_id, entry);
                        (container, lookup)
                    }
                    // Not cached: once the runtime answers again, this container is asked at its next event.
                    Err(reason) => {
                        self.failed(&reason);
                        (None, Lookup::Failed)
                    }
                }
            }
        };
        if let Some(container) = container {
            event.container_name.clone_from(&container.name);
            event.image.clone_from(&container.image);
            event.pod_name.clone_from(&container.pod_name);
            event.pod_namespace.clone_from(&container.pod_namespace);
            if event.pod_uid.is_none() {
                event.pod_uid.clone_from(&container.pod_uid);
            }
        }
        Some(lookup)
    }

    fn failed(&mut self, reason: &str) {
        if !self.failing {
            self.failing = true;
            tracing::warn!(
                socket = %self.socket().display(),
                reason,
                "CRI lookups fail; node events go out without container names and images until it answers"
            );
        }
        self.paused_until = Some(Instant::now() + self.next_pause);
        self.next_pause = (self.next_pause * 2).min(LONGEST_PAUSE);
    }

    fn answered(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!(socket = %self.socket().display(), "the CRI runtime answers again");
        }
        self.paused_until = None;
        self.next_pause = FIRST_PAUSE;
    }

    /// Keeps the cache within its bound: expired misses go first, then everything (containers seen again are
    /// asked again; one call each).
    fn make_room(&mut self) {
        if self.cache.len() < self.max_entries {
            return;
        }
        let retry_after = self.retry_after;
        self.cache.retain(|_, entry| !matches!(entry, Cached::Missing(at) if at.elapsed() >= retry_after));
        if self.cache.len() >= self.max_entries {
            self.cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        put_varint(out, number << 3 | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn label(key: &str, value: &str) -> Vec<u8> {
        let mut entry = Vec::new();
        field(&mut entry, 1, key.as_bytes());
        field(&mut entry, 2, value.as_bytes());
        entry
    }

    /// A ContainerStatusResponse as a runtime writes it, with fields this reader skips around the ones it reads.
    fn response(image: &str, image_ref: &str) -> Vec<u8> {
        let mut metadata = Vec::new();
        field(&mut metadata, 1, b"web");
        metadata.extend_from_slice(&[0x10, 0x03]); // attempt = 3 (varint)
        let mut image_spec = Vec::new();
        field(&mut image_spec, 1, image.as_bytes());
        let mut status = Vec::new();
        field(&mut status, 1, b"3f2a9c1b");
        field(&mut status, 2, &metadata);
        status.extend_from_slice(&[0x18, 0x01]); // state = RUNNING
        status.extend_from_slice(&[0x20, 0xE8, 0x07]); // created_at = 1000
        field(&mut status, 8, &image_spec);
        field(&mut status, 9, image_ref.as_bytes());
        for (key, value) in [
            ("io.kubernetes.container.name", "web"),
            ("io.kubernetes.pod.name", "web-7d4b9c-x2x9q"),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.uid", "0d9a2f4e-1111-2222-3333-444455556666"),
        ] {
            field(&mut status, 12, &label(key, value));
        }
        status.extend_from_slice(&[0x7D, 0, 0, 0, 0]); // field 15 as fixed32: skipped by wire type
        let mut out = Vec::new();
        field(&mut out, 1, &status);
        field(&mut out, 2, &label("info", "{}"));
        out
    }

    #[test]
    fn container_status_fields_are_read() {
        let container = decode_container_status_response(&response("registry.example/shop/web:1.4.2", "sha256:ab"))
            .expect("decodes");
        assert_eq!(
            container,
            CriContainer {
                name: Some("web".into()),
                image: Some("registry.example/shop/web:1.4.2".into()),
                pod_name: Some("web-7d4b9c-x2x9q".into()),
                pod_namespace: Some("shop".into()),
                pod_uid: Some("0d9a2f4e-1111-2222-3333-444455556666".into()),
            }
        );
        let by_ref = decode_container_status_response(&response("", "docker.io/library/nginx@sha256:ab")).unwrap();
        assert_eq!(by_ref.image.as_deref(), Some("docker.io/library/nginx@sha256:ab"), "image_ref when no tag");
    }

    #[test]
    fn damaged_answers_are_errors_not_panics() {
        let whole = response("img", "ref");
        for cut in 1..whole.len() {
            // Every strict prefix either decodes (a cut between fields) or is a typed error; none panics.
            let _ = decode_container_status_response(&whole[..cut]);
        }
        assert!(decode_container_status_response(&[0x0A, 0x05, 0x01]).is_err(), "length beyond the message");
        assert!(decode_container_status_response(&[0x0B]).is_err(), "group wire type");
        assert!(decode_container_status_response(&[0x0A, 0x02, 0x12, 0x80]).is_err(), "cut varint");
    }

    #[test]
    fn request_and_frames() {
        let request = encode_container_status_request("abc");
        assert_eq!(request, [0x0A, 3, b'a', b'b', b'c']);
        let frame = grpc_frame(&request);
        assert_eq!(&frame[..5], &[0, 0, 0, 0, 5]);
        assert_eq!(read_grpc_frame(&frame).unwrap(), request);
        assert!(read_grpc_frame(&frame[..7]).is_err());
        assert!(read_grpc_frame(&[1, 0, 0, 0, 0]).is_err(), "compressed");
        let long = "x".repeat(300);
        assert_eq!(&encode_container_status_request(&long)[..3], &[0x0A, 0xAC, 0x02], "two-byte varint length");
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error_and_cached_as_missing() {
        let mut resolver =
            CriResolver::new(CriClient::new("/nonexistent/palisade-cri.sock"), Duration::from_millis(200), 4);
        let mut event: NodeEvent =
            serde_json::from_str(include_str!("../../../schemas/fixtures/node_event.v1.json")).expect("fixture");
        assert_eq!(resolver.fill(&mut event).await, Some(Lookup::Failed));
        assert_eq!(resolver.fill(&mut event).await, Some(Lookup::Skipped), "not asked again during the pause");
        event.container_id = Some("another".into());
        assert_eq!(resolver.fill(&mut event).await, Some(Lookup::Skipped), "nor for another container");
        assert_eq!(event.container_name, None);
        assert_eq!(resolver.next_pause, FIRST_PAUSE * 2, "the next pause is longer");
        resolver.paused_until = Some(Instant::now());
        assert_eq!(resolver.fill(&mut event).await, Some(Lookup::Failed), "asked again after the pause");
        assert!(resolver.cache.is_empty(), "failures are not cached as answers");
        event.container_id = None;
        assert_eq!(resolver.fill(&mut event).await, None, "host events are not looked up");
        let error = CriClient::new("/nonexistent/palisade-cri.sock").container_status("x").await.unwrap_err();
        assert!(error.to_string().contains("/nonexistent/palisade-cri.sock"), "{error}");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut resolver = CriResolver::new(CriClient::new("/nonexistent"), Duration::from_millis(1), 3);
        for index in 0..10 {
            resolver.make_room();
            resolver.cache.insert(format!("c{index}"), Cached::Found(Arc::new(CriContainer::default())));
            assert!(resolver.cache.len() <= 3);
        }
    }
}
