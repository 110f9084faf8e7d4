//! TLS for the REST API and mutual TLS between nodes, from the cluster CA every node is given.
//!
//! Each node issues itself a certificate at start (`node_cert.rs`): its peer name
//! `node-<id>.flotilla`, which the Raft port checks against the membership on every request
//! (`raft/service.rs`) and a node expects of the peer it dials, and the names clients reach
//! its API by. The Raft port refuses a client without a certificate of the CA; the API serves
//! HTTPS with the same certificate and authenticates callers by token.
//!
//! Plain TCP is there only behind `--insecure-plaintext`, logged as a warning at start.

pub mod accept;
pub mod join;
pub mod node_cert;

use flotilla_pki::{ClientTls, ClusterCa, NodeCertRequest};
use node_cert::{NODE_CERT_LIFETIME_MS, NodeCert, NodeCertError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The CA files and names a node is given (`--tls-ca-file`, `--tls-ca-key-file`, `--tls-name`).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    pub ca_key_file: PathBuf,
    /// Names and addresses the API certificate carries beyond the defaults.
    pub extra_names: Vec<String>,
    /// Fetch the two files with a join token at the first start (`join.rs`).
    pub from_join: Option<CaFetch>,
}

/// Where and how a joining node fetches the cluster CA.
#[derive(Clone, Debug)]
pub struct CaFetch {
    /// The seed's API (`https://host:port`).
    pub seed: String,
    /// `sha256:<hex>` of the CA certificate the seed must present.
    pub ca_sha256: String,
    pub secret: crate::auth::JoinSecret,
}

/// How a node talks: TLS from the cluster CA, or plain TCP for development.
#[derive(Clone, Debug)]
pub enum TransportMode {
    Tls(TlsFiles),
    Plaintext,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the cluster CA: {0}")]
    Ca(#[from] flotilla_pki::CaError),
    #[error("this node's certificate: {0}")]
    Cert(#[from] NodeCertError),
    #[error("a TLS configuration: {0}")]
    Config(String),
}

/// This node's TLS: its certificate and the configurations built on it.
#[derive(Clone, Debug)]
pub struct NodeTls {
    cert: Arc<NodeCert>,
}

impl NodeTls {
    /// Loads the CA and issues this node's certificate for `api_names`.
    pub fn start(files: &TlsFiles, node_id: u64, api_names: Vec<String>, now_ms: u64) -> Result<NodeTls, TlsError> {
        let ca = ClusterCa::load(&files.ca_file, &files.ca_key_file)?;
        let request = NodeCertRequest {
            node_id,
            api_names,
            lifetime_ms: NODE_CERT_LIFETIME_MS,
        };
        Ok(NodeTls {
            cert: Arc::new(NodeCert::issue(ca, request, now_ms)?),
        })
    }

    pub fn cert(&self) -> Arc<NodeCert> {
        self.cert.clone()
    }

    /// What trusting the cluster CA takes: its certificates.
    pub fn trust(&self) -> ClientTls {
        ClientTls::new(self.cert.ca().trusted().to_vec())
    }

    /// The Raft port's server side: a client certificate of the CA is required.
    pub fn raft_server(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = flotilla_pki::client::provider();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.trust().root_store()),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// A node dialling a peer's Raft port: presents this node's certificate, trusts the CA.
    pub fn raft_client(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(flotilla_pki::client::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(self.trust().root_store())
            .with_client_cert_resolver(self.cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The API's server side: HTTPS, callers authenticated by token, not certificate.
    pub fn api_server(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(flotilla_pki::client::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// What a node's outgoing API calls (founding, joining, clock samples) and its redirects use.
#[derive(Clone, Debug)]
pub struct ApiTransport {
    /// `https`, or `http` under `--insecure-plaintext`.
    pub scheme: &'static str,
    client_tls: ClientTls,
}

impl ApiTransport {
    pub fn new(tls: Option<&NodeTls>) -> ApiTransport {
        match tls {
            Some(tls) => ApiTransport {
                scheme: "https",
                client_tls: tls.trust(),
            },
            None => ApiTransport {
                scheme: "http",
                client_tls: ClientTls::new(Vec::new()),
            },
        }
    }

    /// The URL of `path` on the API at `addr` (`host:port`).
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// An HTTP client for other nodes' APIs that trusts the cluster CA, redirects not followed.
    pub fn client(&self, timeout_ms: u64) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(self.client_tls.rustls_config())
            .build()
            .expect("an HTTP client with a preconfigured TLS backend builds")
    }
}
