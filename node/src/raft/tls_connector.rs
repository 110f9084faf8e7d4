//! The TCP-then-TLS connector of a Raft channel: connects from the pinned source address (if
//! any), then runs the handshake expecting the target node's peer name, presenting this
//! node's certificate.

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Clone)]
pub struct TlsConnector {
    /// `host:port` of the peer's Raft port.
    pub addr: String,
    pub source_ip: Option<IpAddr>,
    /// What the peer's certificate must name (`flotilla_pki::peer_name`).
    pub server_name: ServerName<'static>,
    pub config: Arc<rustls::ClientConfig>,
}

type Connected = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower::Service<tonic::codegen::http::Uri> for TlsConnector {
    type Response = Connected;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Connected>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: tonic::codegen::http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = connect(&this.addr, this.source_ip).await?;
            let tls = tokio_rustls::TlsConnector::from(this.config)
                .connect(this.server_name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// Connects to the first address of `addr` that answers, from `source_ip` where its family
/// matches.
async fn connect(addr: &str, source_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr} resolves to no address"));
    for target in tokio::net::lookup_host(addr).await? {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source_ip.filter(|ip| ip.is_ipv4() == target.is_ipv4()) {
            socket.bind((ip, 0).into())?;
        }
        socket.set_nodelay(true)?;
        match socket.connect(target).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}
