//! Fetching the cluster CA with a join token, once, at a joining node's first start: the seed
//! is trusted only if the certificate chain it presents holds the CA certificate whose hash
//! the operator gave (`--join-ca-sha256`, printed with the token), as kubeadm pins its CA.
//! The two files land in the data directory (`tls/ca.crt`, `tls/ca.key` with mode 0600), and
//! every later start uses them.

use super::{CaFetch, TlsFiles};
use flotilla_pki::certificate_sha256;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// Attempts to reach the seed before giving up, one a second.
const FETCH_ATTEMPTS: usize = 30;
/// Of those, answers "no such join token" taken for a seed that has not applied the token
/// yet (a follower a moment behind); past them the token is taken as unknown.
const UNKNOWN_ATTEMPTS: usize = 5;
const FETCH_RETRY_MS: u64 = 1_000;
/// Largest answer read: two PEM files of a few KiB.
const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the seed refused the join token: {0}")]
    Refused(String),
    #[error("the seed could not be asked for the CA: {0}")]
    Unreachable(String),
    #[error("the seed's answer is no CA: {0}")]
    BadAnswer(String),
    #[error("writing {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// Trusts a server whose chain holds the pinned CA certificate and whose own certificate that
/// CA signed for the name dialled.
#[derive(Debug)]
struct PinnedCa {
    ca_sha256: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let anchor = intermediates
            .iter()
            .find(|c| certificate_sha256(c) == self.ca_sha256)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the seed presented no CA certificate with --join-ca-sha256 {}: it is not of the cluster the token was made for",
                    self.ca_sha256
                ))
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Fetches the CA into `files` unless they exist (a node that joined before restarts with
/// what it fetched then). A refusal (unknown, expired or used token) ends it; an unreachable
/// seed, or one that has not applied the token yet, is asked again for `FETCH_ATTEMPTS`
/// seconds.
pub async fn fetch_if_missing(files: &TlsFiles, fetch: &CaFetch) -> Result<(), JoinError> {
    if files.ca_file.exists() && files.ca_key_file.exists() {
        return Ok(());
    }
    let provider = flotilla_pki::client::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| JoinError::Unreachable(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            ca_sha256: fetch.ca_sha256.clone(),
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| JoinError::Unreachable(e.to_string()))?;
    let url = format!("{}/v1/cluster/ca", fetch.seed.trim_end_matches('/'));
    let mut last = JoinError::Unreachable("no attempt made".into());
    let mut unknown = 0;
    for attempt in 0..FETCH_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(FETCH_RETRY_MS)).await;
        }
        let response = match http.post(&url).bearer_auth(fetch.secret.reveal()).send().await {
            Ok(r) => r,
            Err(e) => {
                let text = error_chain(&e);
                // A seed that is not of the pinned CA will not become so: no retry.
                if text.contains("--join-ca-sha256") {
                    return Err(JoinError::Unreachable(text));
                }
                tracing::warn!(seed = %fetch.seed, error = %text, "fetching the cluster CA; asking again");
                last = JoinError::Unreachable(text);
                continue;
            }
        };
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| JoinError::Unreachable(e.to_string()))?;
        if body.len() > MAX_ANSWER_BYTES {
            return Err(JoinError::BadAnswer(format!("{} bytes", body.len())));
        }
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        let message = value["error"]["message"].as_str().unwrap_or_default().to_string();
        if status.is_success() {
            return store(files, fetch, &value);
        }
        // A follower may not have applied the token yet: "unknown" is asked again; expired
        // and used never change.
        if status == reqwest::StatusCode::UNAUTHORIZED {
            unknown += 1;
            if !message.starts_with("no such join token") || unknown >= UNKNOWN_ATTEMPTS {
                return Err(JoinError::Refused(message));
            }
        }
        last = if status == reqwest::StatusCode::UNAUTHORIZED {
            JoinError::Refused(message)
        } else {
            JoinError::Unreachable(format!("{status}: {message}"))
        };
        tracing::warn!(seed = %fetch.seed, error = %last, "fetching the cluster CA; asking again");
    }
    Err(last)
}

/// Checks the answer (the pinned certificate among the CA's, a key that belongs to one of
/// them) and writes the two files.
fn store(files: &TlsFiles, fetch: &CaFetch, answer: &serde_json::Value) -> Result<(), JoinError> {
    let (Some(certs), Some(key)) = (answer["ca_certificates"].as_str(), answer["ca_key"].as_str()) else {
        return Err(JoinError::BadAnswer("no ca_certificates and ca_key".into()));
    };
    let parsed =
        flotilla_pki::parse_certificates(certs, "the seed's CA").map_err(|e| JoinError::BadAnswer(e.to_string()))?;
    if !parsed.iter().any(|c| certificate_sha256(c) == fetch.ca_sha256) {
        return Err(JoinError::BadAnswer(
            "the pinned certificate is not among the CA's".into(),
        ));
    }
    flotilla_pki::ClusterCa::from_pem(certs, key, "the seed's CA").map_err(|e| JoinError::BadAnswer(e.to_string()))?;
    let write = |path: &std::path::Path, text: &str, mode: u32| -> Result<(), JoinError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let failed = |error| JoinError::Write {
            path: path.display().to_string(),
            error,
        };
        let part = path.with_extension("part");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&part)
            .map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        std::fs::rename(&part, path).map_err(failed)
    };
    if let Some(dir) = files.ca_file.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|error| JoinError::Write {
                path: dir.display().to_string(),
                error,
            })?;
    }
    // The key first: the certificates' presence is what says the fetch is done.
    write(&files.ca_key_file, key, 0o600)?;
    write(&files.ca_file, certs, 0o644)?;
    tracing::info!(ca_sha256 = %fetch.ca_sha256, "fetched the cluster CA with the join token");
    Ok(())
}

/// An error with its causes, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
