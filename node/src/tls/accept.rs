//! Accepting TLS connections for a server that takes a stream of ready connections (tonic's
//! `serve_with_incoming`): each handshake runs in its own task, bounded in number and time, so
//! a client that connects and never finishes its handshake holds up no one.

use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Bounds of the accepting loop.
#[derive(Clone, Copy, Debug)]
pub struct AcceptConfig {
    /// Handshakes in progress at once; past it a new connection waits to be accepted.
    pub max_handshakes: usize,
    /// Time a client has to complete its handshake.
    pub handshake_timeout_ms: u64,
}

impl Default for AcceptConfig {
    fn default() -> Self {
        AcceptConfig {
            max_handshakes: 64,
            handshake_timeout_ms: 10_000,
        }
    }
}

/// Connections that completed their handshake on `listener`, until `stop` turns true.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    bounds: AcceptConfig,
    mut stop: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(bounds.max_handshakes.max(1));
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(bounds.max_handshakes.max(1)));
    tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot,
                _ = stopped(&mut stop) => return,
            };
            let Ok(slot) = slot else { return };
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop) => return,
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let timeout = Duration::from_millis(bounds.handshake_timeout_ms);
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "a TLS handshake failed"),
                    Err(_) => tracing::debug!("a TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
