//! The REST API's server loop: axum's router on hyper's HTTP/1 connections, with the bounds
//! `axum::serve` does not offer. A client must send a request's headers within
//! `header_read_timeout_ms` (one that connects and sends nothing, or trickles its headers, is
//! cut off, and so is a keep-alive connection idle that long), and at most `max_connections`
//! are open at once: past that a new connection is closed as soon as it is accepted, so
//! thousands of idle sockets cannot exhaust the node's file descriptors. With TLS the
//! handshake runs in the connection's own task, within the same header deadline.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Bounds of the server loop (see the module doc).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    /// HTTPS with this configuration; plain HTTP when `None` (`--insecure-plaintext`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `router` on `listener` until `shutdown` turns true, then lets open connections
/// finish their requests (streams end on the same signal) and returns.
pub async fn serve(listener: TcpListener, router: Router, config: ServerConfig, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let acceptor = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was taken: go on.
                    tracing::warn!(error = %e, "accepting an API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(max = config.max_connections, "API connection refused: too many open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stop = shutdown.clone();
        let acceptor = acceptor.clone();
        let header_read_timeout_ms = config.header_read_timeout_ms;
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                serve_connection(stream, service, header_read_timeout_ms, stop).await;
                return;
            };
            let deadline = Duration::from_millis(header_read_timeout_ms);
            match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_connection(tls, service, header_read_timeout_ms, stop).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "an API client's TLS handshake failed"),
                Err(_) => tracing::debug!("an API client's TLS handshake timed out"),
            }
        });
    }
    // Every slot back means every connection has closed.
    let _ = slots
        .acquire_many(u32::try_from(config.max_connections).unwrap_or(u32::MAX))
        .await;
}

/// Serves HTTP/1.1 on one connection until it closes, or gracefully once `stop` turns true.
async fn serve_connection<S>(
    stream: S,
    service: TowerToHyperService<Router>,
    header_read_timeout_ms: u64,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(header_read_timeout_ms));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Waits until `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
