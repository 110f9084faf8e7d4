//! TLS settings of a client of the cluster (the CLI, a node calling another node's API, the
//! tests, the load generators): rustls over ring, trusting the cluster CA's certificates
//! only, never the system's roots (a public CA cannot vouch for a node).

use crate::authority::{CaError, parse_certificates, read_small};
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// A client's TLS: the certificates it trusts as the cluster's CA.
#[derive(Clone, Debug)]
pub struct ClientTls {
    trusted: Vec<CertificateDer<'static>>,
}

impl ClientTls {
    pub fn new(trusted: Vec<CertificateDer<'static>>) -> ClientTls {
        ClientTls { trusted }
    }

    /// The CA certificates in the PEM file at `path` (`--ca-file`).
    pub fn from_file(path: &Path) -> Result<ClientTls, CaError> {
        Ok(ClientTls::new(read_trust_bundle(path)?))
    }

    pub fn trusted(&self) -> &[CertificateDer<'static>] {
        &self.trusted
    }

    /// These certificates as rustls's trust anchors.
    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for cert in &self.trusted {
            // A certificate webpki cannot use as a trust anchor is left out; none of a bundle
            // `parse_certificates` accepted is expected to be.
            let _ = roots.add(cert.clone());
        }
        roots
    }

    /// A rustls client configuration that trusts these certificates, speaking HTTP/1.1 (what
    /// the REST API serves).
    pub fn rustls_config(&self) -> rustls::ClientConfig {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(self.root_store())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

/// The crypto provider every TLS configuration of the project uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM bundle file.
pub fn read_trust_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    parse_certificates(&read_small(path)?, &path.display().to_string())
}
