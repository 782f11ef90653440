//! What the webhook does to a connection before HTTP sees it: a cap on open connections in all and per source
//! address (one peer cannot take every slot from the API server), a deadline on the TLS handshake and the first
//! bytes, and, unless HTTP/2 is enabled, closing connections that open with the HTTP/2 preface. The API server
//! speaks HTTP/1.1 to webhooks; everything here bounds what an unauthenticated peer costs.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_telemetry::ItemDropped;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const COMPONENT: &str = "audit-webhook";

/// Wraps the transport acceptor (plain or TLS) of the webhook.
#[derive(Clone)]
pub struct GuardedAcceptor<A> {
    inner: A,
    connections: Arc<Semaphore>,
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_source: usize,
    first_bytes_timeout: Duration,
    http2_enabled: bool,
}

/// The limits a guarded acceptor applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub first_bytes_timeout: Duration,
    pub http2_enabled: bool,
}

impl<A> GuardedAcceptor<A> {
    pub fn new(inner: A, limits: Limits) -> Self {
        Self {
            inner,
            connections: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_source: Arc::new(Mutex::new(HashMap::new())),
            max_per_source: limits.max_connections_per_source.max(1),
            first_bytes_timeout: limits.first_bytes_timeout,
            http2_enabled: limits.http2_enabled,
        }
    }
}

/// A source address's share of the connections, given back when the connection closes.
struct SourceSlot {
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    source: IpAddr,
}

impl SourceSlot {
    fn take(per_source: &Arc<Mutex<HashMap<IpAddr, usize>>>, source: IpAddr, max: usize) -> Option<Self> {
        let mut counts = per_source.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(source).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self { per_source: per_source.clone(), source })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.per_source.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

fn refused(reason: &'static str) -> io::Error {
    ItemDropped { component: COMPONENT, reason, count: 1 }.emit();
    io::Error::new(io::ErrorKind::ConnectionRefused, reason)
}

impl<A, S> axum_server::accept::Accept<TcpStream, S> for GuardedAcceptor<A>
where
    A: axum_server::accept::Accept<TcpStream, S> + Clone + Send + Sync + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Service: Send + 'static,
    A::Future: Send + 'static,
    S: Send + 'static,
{
    type Stream = Guarded<A::Stream>;
    type Service = A::Service;
    type Future = futures::future::BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        // Refused before the handshake: dropping the stream closes the connection.
        let Ok(source) = stream.peer_addr().map(|addr| addr.ip()) else {
            return Box::pin(async { Err(refused("no peer address")) });
        };
        let Some(slot) = SourceSlot::take(&self.per_source, source, self.max_per_source) else {
            return Box::pin(async { Err(refused("per-source connection limit")) });
        };
        let Ok(permit) = self.connections.clone().try_acquire_owned() else {
            return Box::pin(async { Err(refused("connection limit")) });
        };
        let accepting = self.inner.accept(stream, service);
        let (deadline, http2_enabled) = (self.first_bytes_timeout, self.http2_enabled);
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let (mut stream, service) =
                tokio::time::timeout(deadline, accepting).await.map_err(|_| refused("handshake timeout"))??;
            let mut prefix = Vec::new();
            if !http2_enabled {
                let remaining = deadline.saturating_sub(started.elapsed());
                tokio::time::timeout(remaining, read_until_not_http2(&mut stream, &mut prefix))
                    .await
                    .map_err(|_| refused("first bytes timeout"))??;
                if prefix.as_slice() == HTTP2_PREFACE {
                    return Err(refused("HTTP/2 not enabled"));
                }
            }
            Ok((Guarded { inner: stream, prefix, position: 0, _permit: permit, _slot: Some(slot) }, service))
        })
    }
}

/// Reads until the bytes read can no longer be the HTTP/2 preface, or are all of it (or the peer closed).
async fn read_until_not_http2<R: AsyncRead + Unpin>(stream: &mut R, prefix: &mut Vec<u8>) -> io::Result<()> {
    let mut buffer = [0u8; 24];
    while prefix.len() < HTTP2_PREFACE.len() && HTTP2_PREFACE.starts_with(prefix) {
        let wanted = HTTP2_PREFACE.len() - prefix.len();
        let read = stream.read(&mut buffer[..wanted]).await?;
        if read == 0 {
            break;
        }
        prefix.extend_from_slice(&buffer[..read]);
    }
    Ok(())
}

/// A connection that holds its slot until it closes, and gives back the bytes read to judge it before the rest.
pub struct Guarded<S> {
    inner: S,
    prefix: Vec<u8>,
    position: usize,
    _permit: OwnedSemaphorePermit,
    _slot: Option<SourceSlot>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.position < self.prefix.len() {
            let count = (self.prefix.len() - self.position).min(buf.remaining());
            let start = self.position;
            buf.put_slice(&self.prefix[start..start + count]);
            self.position += count;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_bytes_come_back_before_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"POST /x HTTP/1.1\r\n").await.unwrap();
        drop(client);
        let mut server = server;
        let mut prefix = Vec::new();
        read_until_not_http2(&mut server, &mut prefix).await.unwrap();
        assert!(!prefix.is_empty() && prefix.len() < HTTP2_PREFACE.len(), "stops at the first byte that differs");
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let mut guarded = Guarded { inner: server, prefix, position: 0, _permit: permit, _slot: None };
        let mut all = String::new();
        guarded.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "POST /x HTTP/1.1\r\n");
    }

    #[test]
    fn a_source_gets_its_share_and_it_comes_back_when_a_connection_closes() {
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = SourceSlot::take(&counts, a, 2).unwrap();
        let _second = SourceSlot::take(&counts, a, 2).unwrap();
        assert!(SourceSlot::take(&counts, a, 2).is_none(), "a third from the same source");
        assert!(SourceSlot::take(&counts, b, 2).is_some(), "another source is not held up");
        drop(first);
        assert!(SourceSlot::take(&counts, a, 2).is_some());
    }

    #[tokio::test]
    async fn the_http2_preface_is_read_whole() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, HTTP2_PREFACE).await.unwrap();
        let mut prefix = Vec::new();
        read_until_not_http2(&mut server, &mut prefix).await.unwrap();
        assert_eq!(prefix.as_slice(), HTTP2_PREFACE);
    }
}
