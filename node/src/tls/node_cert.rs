//! This node's certificate, issued by the cluster CA at start and renewed while the node
//! runs, served to TLS handshakes on both ports and presented to peers.
//!
//! It lives in memory only: a restart issues a new one, so no node key is ever on disk. A
//! handshake reads whichever certificate is current; renewal swaps it, and connections
//! opened before keep the one they were made with (peers check the member, not the serial).

use flotilla_pki::{ClusterCa, Issued, NodeCertRequest};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, RwLock};

/// Lifetime of a node certificate.
pub const NODE_CERT_LIFETIME_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// How often the renewal loop looks at the certificate.
pub const RENEWAL_CHECK_MS: u64 = 60 * 60 * 1000;

/// Whether a certificate valid from `not_before_ms` to `not_after_ms` is renewed at `now_ms`:
/// once half its lifetime has passed (or the clock jumped outside it), so a renewal that
/// fails is retried for days before the certificate expires.
pub fn renewal_due(not_before_ms: u64, not_after_ms: u64, now_ms: u64) -> bool {
    let half = not_before_ms.saturating_add(not_after_ms.saturating_sub(not_before_ms) / 2);
    now_ms >= half || now_ms < not_before_ms
}

#[derive(Debug, thiserror::Error)]
pub enum NodeCertError {
    #[error(transparent)]
    Ca(#[from] flotilla_pki::CaError),
    #[error("the issued key cannot be used: {0}")]
    Key(#[from] rustls::Error),
}

/// The current certificate and what it was issued for.
pub struct NodeCert {
    ca: ClusterCa,
    request: NodeCertRequest,
    current: RwLock<Current>,
}

struct Current {
    key: Arc<CertifiedKey>,
    not_before_ms: u64,
    not_after_ms: u64,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("node_id", &self.request.node_id)
            .finish_non_exhaustive()
    }
}

fn certified(issued: Issued) -> Result<Current, NodeCertError> {
    let key = rustls::crypto::ring::sign::any_supported_type(&issued.key)?;
    Ok(Current {
        key: Arc::new(CertifiedKey::new(issued.chain, key)),
        not_before_ms: issued.not_before_ms,
        not_after_ms: issued.not_after_ms,
    })
}

impl NodeCert {
    /// Issues the first certificate.
    pub fn issue(ca: ClusterCa, request: NodeCertRequest, now_ms: u64) -> Result<NodeCert, NodeCertError> {
        let current = certified(ca.issue(&request, now_ms)?)?;
        Ok(NodeCert {
            ca,
            request,
            current: RwLock::new(current),
        })
    }

    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// Renews the certificate if `renewal_due`; says whether it did.
    pub fn renew_if_due(&self, now_ms: u64) -> Result<bool, NodeCertError> {
        let (not_before_ms, not_after_ms) = {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            (current.not_before_ms, current.not_after_ms)
        };
        if !renewal_due(not_before_ms, not_after_ms, now_ms) {
            return Ok(false);
        }
        let next = certified(self.ca.issue(&self.request, now_ms)?)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(true)
    }

    /// When the current certificate expires, in ms since the epoch.
    pub fn not_after_ms(&self) -> u64 {
        self.current.read().unwrap_or_else(|p| p.into_inner()).not_after_ms
    }

    fn key(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).key.clone()
    }
}

impl rustls::server::ResolvesServerCert for NodeCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

impl rustls::client::ResolvesClientCert for NodeCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Renews `cert` when due until `stop` turns true; a failure is logged and retried at the
/// next check, long before the certificate expires.
pub async fn run_renewal(cert: Arc<NodeCert>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(RENEWAL_CHECK_MS)) => {}
            _ = stop.changed() => return,
        }
        match cert.renew_if_due(crate::raft::proposer::wall_clock_ms()) {
            Ok(true) => tracing::info!(not_after_ms = cert.not_after_ms(), "node certificate renewed"),
            Ok(false) => {}
            Err(e) => tracing::error!(
                error = %e,
                not_after_ms = cert.not_after_ms(),
                "renewing this node's certificate failed; peers refuse it once it expires"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::renewal_due;

    #[test]
    fn renewal_is_due_from_half_the_lifetime_or_when_the_clock_left_it() {
        assert!(!renewal_due(1_000, 3_000, 1_000));
        assert!(!renewal_due(1_000, 3_000, 1_999));
        assert!(renewal_due(1_000, 3_000, 2_000));
        assert!(renewal_due(1_000, 3_000, 5_000));
        assert!(renewal_due(1_000, 3_000, 999), "a clock set back before the validity");
    }
}
