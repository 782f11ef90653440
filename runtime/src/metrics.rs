//! The Prometheus `/metrics` endpoint (and `/healthz`, `/readyz`), served from the default registry.

use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};

use crate::shutdown::Shutdown;

/// Renders every registered metric in the Prometheus text format.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(error) = encoder.encode(&prometheus::gather(), &mut buffer) {
        tracing::error!(%error, "cannot encode metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// 200 while every component does its work, 503 once one has been failing past the grace period; the body has a
/// line per component either way.
async fn healthz() -> (StatusCode, String) {
    let (healthy, text) =
        palisade_telemetry::health::report(std::time::Instant::now(), palisade_telemetry::health::STUCK_AFTER);
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, if text.is_empty() { "ok\n".to_owned() } else { text })
}

/// 200 once every component the process runs has started and none is stuck, else 503; a line per component.
async fn readyz() -> (StatusCode, String) {
    let (ready, text) =
        palisade_telemetry::health::readiness(std::time::Instant::now(), palisade_telemetry::health::STUCK_AFTER);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, if text.is_empty() { "nothing started yet\n".to_owned() } else { text })
}

/// Binds `addr` and serves until shutdown. Returns the bound address (port 0 picks one).
pub async fn serve(addr: SocketAddr, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(|| async { render() }))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    tokio::spawn(async move {
        let result = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await;
        if let Err(error) = result {
            tracing::error!(%error, "metrics endpoint stopped");
        }
    });
    tracing::info!(%bound, "metrics endpoint listening");
    Ok(bound)
}
