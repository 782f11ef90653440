//! The webhook endpoint. Status codes: 200 after the bus acknowledged every event of the batch; 401 without the
//! configured bearer token or client certificate, answered before any of the body is read; 413 above the body
//! limit; 408 when the body does not arrive in time; 400 for a body that is not audit JSON (the body goes to the
//! dead-letter topic with the reason); 429 when too many batches are in flight and 503 when the bus refuses,
//! both with Retry-After so the API server retries instead of losing the batch. Connections are capped and timed
//! before HTTP sees them (`connection.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use palisade_runtime::bus::Outgoing;
use palisade_runtime::trace::RecordSpan;
use palisade_runtime::{Bus, Message, Shutdown};
use palisade_schemas::{AuditEvent, Codec, split_events};
use palisade_telemetry::{ComponentStarted, ComponentStopped, ItemDropped, RecordProduced};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::config::AuditConfig;
use super::connection::{GuardedAcceptor, Limits};
use super::tls;

pub const WEBHOOK_PATH: &str = "/audit/webhook";
const STAGE: &str = "audit";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit source `{name}`: {reason}")]
    SourceSettings { name: String, reason: String },
    #[error("audit.listen_addr `{0}` is not ip:port")]
    ListenAddr(String),
    #[error("TLS material {path}: {reason}")]
    Tls { path: String, reason: String },
    #[error("cannot read the webhook token file {path}: {source}; create it or unset audit.token_file")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit.token_file {path} is empty: an empty token would let `Authorization: Bearer ` in; write the token the \
         API server presents into it"
    )]
    EmptyToken { path: PathBuf },
    #[error(
        "the audit webhook has no credential: set audit.token_file, or audit.client_ca_path with TLS, or set \
         audit.allow_unauthenticated = true to accept anyone who reaches {addr}"
    )]
    NoCredential { addr: String },
    #[error(
        "audit.client_ca_path is set but audit.tls_disabled is true: client certificates need TLS, so nothing would \
         be checked; enable TLS or remove client_ca_path"
    )]
    ClientCaWithoutTls,
    #[error(
        "audit.client_certificate_names is set without audit.client_ca_path: no client certificate is asked for, so \
         the names would pin nothing; set client_ca_path or remove the names"
    )]
    NamesWithoutClientCa,
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("schema codec: {0}")]
    Codec(#[from] palisade_schemas::CodecError),
}

struct AppState {
    bus: Bus,
    codec: Codec<AuditEvent>,
    audit_topic: String,
    dead_letter_topic: String,
    cluster: String,
    token: Option<String>,
    /// Client certificates from the configured CA authenticate too.
    client_certificates: bool,
    in_flight: Semaphore,
    retry_after: HeaderValue,
    body_limit_bytes: usize,
    body_timeout: Duration,
}

/// Refuses the configurations that would let anyone in: an empty token, a client CA without TLS, and no
/// credential at all unless explicitly allowed. `token` is the token file's trimmed content, when there is one.
pub fn check_credentials(config: &AuditConfig, token: Option<&str>) -> Result<(), AuditError> {
    if let (Some(path), Some("")) = (&config.token_file, token) {
        return Err(AuditError::EmptyToken { path: path.clone() });
    }
    if config.client_ca_path.is_some() && config.tls_disabled {
        return Err(AuditError::ClientCaWithoutTls);
    }
    if !config.client_certificate_names.is_empty() && config.client_ca_path.is_none() {
        return Err(AuditError::NamesWithoutClientCa);
    }
    if token.is_none() && config.client_ca_path.is_none() && !config.allow_unauthenticated {
        return Err(AuditError::NoCredential { addr: config.listen_addr.clone() });
    }
    Ok(())
}

pub struct WebhookServer {
    pub local_addr: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
}

impl WebhookServer {
    /// Binds and starts serving; returns once listening.
    pub async fn start(
        config: &AuditConfig,
        bus: Bus,
        audit_topic: &str,
        dead_letter_topic: &str,
        cluster: &str,
        shutdown: Shutdown,
    ) -> Result<Self, AuditError> {
        let addr: SocketAddr =
            config.listen_addr.parse().map_err(|_| AuditError::ListenAddr(config.listen_addr.clone()))?;
        let token = match &config.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| AuditError::Token { path: path.clone(), source })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        check_credentials(config, token.as_deref())?;
        let client_certificates = config.client_ca_path.is_some();
        if token.is_none() && !client_certificates {
            tracing::warn!("audit webhook accepts unauthenticated requests (audit.allow_unauthenticated = true)");
        }
        let state = Arc::new(AppState {
            bus,
            codec: Codec::new()?,
            audit_topic: audit_topic.to_owned(),
            dead_letter_topic: dead_letter_topic.to_owned(),
            cluster: cluster.to_owned(),
            token,
            client_certificates,
            in_flight: Semaphore::new(config.max_in_flight_requests.max(1)),
            retry_after: HeaderValue::from(config.retry_after_secs),
            body_limit_bytes: config.body_limit_bytes,
            body_timeout: Duration::from_millis(config.body_timeout_ms.max(1)),
        });
        let app = Router::new().route(WEBHOOK_PATH, post(receive)).with_state(state);
        let handle = axum_server::Handle::new();
        let serve_handle = handle.clone();
        let tls_config = if config.tls_disabled {
            None
        } else {
            Some(tls::server_config(
                config.tls_cert_path.as_deref(),
                config.tls_key_path.as_deref(),
                config.client_ca_path.as_deref(),
                config.http2_enabled,
            )?)
        };
        let header_timeout = Duration::from_millis(config.header_timeout_ms.max(1));
        let client_certificate_names = config.client_certificate_names.clone();
        if !client_certificate_names.is_empty() {
            tracing::info!(names = ?client_certificate_names, "client certificates must carry one of these names");
        }
        let limits = Limits {
            max_connections: config.max_connections,
            max_connections_per_source: config.max_connections_per_source,
            first_bytes_timeout: header_timeout,
            http2_enabled: config.http2_enabled,
        };
        let mut server = axum_server::bind(addr);
        server
            .http_builder()
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(64 * 1024);
        let task = tokio::spawn(async move {
            ComponentStarted { component: STAGE }.emit();
            let server = server.handle(serve_handle);
            let result = match tls_config {
                Some(tls_config) => {
                    let tls_config = axum_server::tls_rustls::RustlsConfig::from_config(tls_config);
                    let tls = tls::ClientCertAcceptor::new(tls_config, &client_certificate_names);
                    let acceptor = GuardedAcceptor::new(tls, limits);
                    server.acceptor(acceptor).serve(app.into_make_service()).await
                }
                None => {
                    let plain = axum_server::accept::DefaultAcceptor::new();
                    let acceptor = GuardedAcceptor::new(plain, limits);
                    server.acceptor(acceptor).serve(app.into_make_service()).await
                }
            };
            if let Err(error) = result {
                tracing::error!(%error, "audit webhook stopped with an error");
            }
            ComponentStopped { component: STAGE }.emit();
        });
        let shutdown_handle = handle.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            // Let batches in flight finish (they are acknowledged to the API server only when published).
            shutdown_handle.graceful_shutdown(Some(Duration::from_secs(10)));
        });
        let local_addr = handle
            .listening()
            .await
            .ok_or_else(|| AuditError::Bind { addr: config.listen_addr.clone(), reason: "listener failed".into() })?;
        tracing::info!(%local_addr, tls = !config.tls_disabled, path = WEBHOOK_PATH, "audit webhook listening");
        Ok(Self { local_addr, task })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A valid client certificate (when configured) or the bearer token (when configured); anything when neither is.
fn authorized(state: &AppState, headers: &HeaderMap, certificate: Option<tls::ClientCertificate>) -> bool {
    if state.client_certificates && certificate.is_some_and(|c| c.0) {
        return true;
    }
    let Some(expected) = &state.token else {
        return !state.client_certificates;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|presented| constant_time_eq(presented.trim().as_bytes(), expected.as_bytes()))
}

fn retry_later(status: StatusCode, state: &AppState, reason: &str) -> Response {
    (status, [(header::RETRY_AFTER, state.retry_after.clone())], reason.to_owned()).into_response()
}

async fn dead_letter(state: &AppState, payload: &[u8], reason: &str) -> Result<(), Response> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    let original = Message {
        topic: "audit-webhook".into(),
        partition: -1,
        offset: -1,
        key: None,
        payload: payload.to_vec(),
        headers: vec![],
        timestamp_ms: Some(now),
    };
    state
        .bus
        .dead_letter(&state.dead_letter_topic, STAGE, &original, reason)
        .await
        .map_err(|_| retry_later(StatusCode::SERVICE_UNAVAILABLE, state, "dead-letter topic unavailable"))
}

/// The body, read only after the request was authenticated and admitted: bounded in size and in time.
async fn read_body(state: &AppState, headers: &HeaderMap, body: axum::body::Body) -> Result<Vec<u8>, Response> {
    let too_large = || {
        // The API server does not retry a 413: the batch is lost. Counted, so it can be alerted on.
        ItemDropped { component: "audit-webhook", reason: "batch over the body limit", count: 1 }.emit();
        let reason = format!("body over audit.body_limit_bytes ({} bytes)", state.body_limit_bytes);
        (StatusCode::PAYLOAD_TOO_LARGE, [(header::CONNECTION, HeaderValue::from_static("close"))], reason)
            .into_response()
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.body_limit_bytes as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, state.body_limit_bytes);
    match tokio::time::timeout(state.body_timeout, limited.collect()).await {
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, HeaderValue::from_static("close"))],
            "body not received within audit.body_timeout_ms",
        )
            .into_response()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => Err((StatusCode::BAD_REQUEST, format!("body could not be read: {error}")).into_response()),
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
    }
}

async fn receive(
    State(state): State<Arc<AppState>>,
    certificate: Option<axum::Extension<tls::ClientCertificate>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if !authorized(&state, &parts.headers, certificate.map(|c| c.0)) {
        // Closed after the answer: a peer without credentials may not keep a connection slot by asking again.
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONNECTION, HeaderValue::from_static("close"))],
            "missing or wrong credentials (bearer token or client certificate)",
        )
            .into_response();
    }
    let Ok(_permit) = state.in_flight.try_acquire() else {
        return retry_later(StatusCode::TOO_MANY_REQUESTS, &state, "too many batches in flight");
    };
    let body = match read_body(&state, &parts.headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let document: Value = match serde_json::from_slice(&body) {
        Ok(document) => document,
        Err(error) => {
            let reason = format!("body is not JSON: {error}");
            if let Err(response) = dead_letter(&state, &body, &reason).await {
                return response;
            }
            return (StatusCode::BAD_REQUEST, reason).into_response();
        }
    };
    let events = match split_events(&document) {
        Ok(events) => events,
        Err(error) => {
            let reason = error.to_string();
            if let Err(response) = dead_letter(&state, &body, &reason).await {
                return response;
            }
            return (StatusCode::BAD_REQUEST, reason).into_response();
        }
    };
    // Encode the batch, dead-lettering events that do not map, then send the rest together: the sends overlap
    // (the bus batches them) and the answer waits for every acknowledgement.
    let mut encoded: Vec<(String, Vec<u8>)> = Vec::with_capacity(events.len());
    for raw in events {
        let mapped = AuditEvent::from_k8s_json(raw, &state.cluster).map_err(|e| e.to_string()).and_then(|event| {
            state.codec.encode(&event).map(|payload| (event.partition_key(), payload)).map_err(|e| e.to_string())
        });
        match mapped {
            Ok(pair) => encoded.push(pair),
            // One bad event does not sink its batch: it is dead-lettered with the reason, the rest go on.
            Err(reason) => {
                if let Err(response) = dead_letter(&state, raw.to_string().as_bytes(), &reason).await {
                    return response;
                }
            }
        }
    }
    // Each event starts its trace here (the API server's own tracing does not reach its audit backends).
    let records: Vec<RecordSpan> = encoded.iter().map(|_| RecordSpan::start(STAGE, &[])).collect();
    let headers: Vec<Vec<(&str, &[u8])>> = records.iter().map(|r| r.header().into_iter().collect()).collect();
    let sends = encoded.iter().zip(&headers).map(|((key, payload), headers)| {
        state.bus.publish(Outgoing { topic: &state.audit_topic, key: Some(key.as_bytes()), payload, headers })
    });
    for (result, (_, payload)) in futures::future::join_all(sends).await.into_iter().zip(&encoded) {
        match result {
            Ok(()) => RecordProduced { stage: STAGE, record: "AuditEvent" }.emit(),
            // Too large for the bus even after the event was shrunk: retrying would refuse the whole batch for
            // ever, so this one is dead-lettered (cut to fit) and the rest of the batch stands.
            Err(error @ palisade_runtime::BusError::TooLarge { .. }) => {
                if let Err(response) = dead_letter(&state, payload, &error.to_string()).await {
                    return response;
                }
            }
            Err(error) => {
                palisade_telemetry::health::failing(STAGE, &format!("the bus refuses audit batches: {error}"));
                tracing::warn!(%error, "audit batch not accepted by the bus; the API server will retry");
                return retry_later(StatusCode::SERVICE_UNAVAILABLE, &state, "event bus unavailable");
            }
        }
    }
    palisade_telemetry::health::succeeded(STAGE);
    StatusCode::OK.into_response()
}
