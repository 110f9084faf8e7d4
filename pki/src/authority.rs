//! The cluster CA as a node holds it: the certificates it trusts (a bundle, so that a new CA
//! can be trusted beside the old one while certificates are rotated) and the key it issues its
//! own node certificate with.
//!
//! The CA is the cluster's: every node is given the same two files (`flotilla tls ca-create`
//! makes them, or an operator's own PKI). A node certificate is issued in memory at start and
//! renewed before it expires (`node_cert.rs`); its private key never touches the disk.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;

/// Largest CA file read, certificates or key: a bundle of a few certificates is a few KiB.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The DNS name a node's certificate carries for its peers: the Raft port checks it against
/// the membership, and a node dialling a peer expects it of the peer.
pub fn peer_name(node_id: u64) -> String {
    format!("node-{node_id}.flotilla")
}

/// The node id in a peer name made by `peer_name`, if it is one.
pub fn node_id_of_peer_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("node-")?.strip_suffix(".flotilla")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// `sha256:` and the hex SHA-256 of a certificate's DER.
pub fn certificate_sha256(cert: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(cert.as_ref());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The node a peer's certificate names: its one peer name among the subject alternative
/// names. `None` for a certificate that names no node, or more than one.
pub fn peer_node_id(cert: &CertificateDer<'_>) -> Option<u64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &names.value.general_names {
        if let x509_parser::extensions::GeneralName::DNSName(dns) = name
            && let Some(id) = node_id_of_peer_name(dns)
        {
            if found.is_some_and(|other| other != id) {
                return None;
            }
            found = Some(id);
        }
    }
    found
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: larger than {MAX_CA_FILE_BYTES} bytes; not a CA file")]
    TooLarge { path: String },
    #[error("{path}: mode {mode:03o} lets every user of this host read the cluster CA's key; chmod 600 it")]
    KeyReadable { path: String, mode: u32 },
    #[error("{what}: holds no PEM certificate")]
    NoCertificate { what: String },
    #[error("{what}: a certificate that cannot be read: {error}")]
    BadCertificate { what: String, error: String },
    #[error("{what}: not a PEM private key ({error})")]
    BadKey { what: String, error: String },
    #[error("the CA key belongs to none of the certificates in {what}: give the bundle that holds its certificate")]
    KeyMatchesNone { what: String },
    #[error("the CA certificate that matches the key expired")]
    Expired,
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
}

/// A certificate and its private key, as issued.
pub struct Issued {
    /// The certificate, then the CA certificate that signed it.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

/// What a node certificate is issued for.
#[derive(Clone, Debug)]
pub struct NodeCertRequest {
    pub node_id: u64,
    /// Names and addresses clients reach the API by (DNS names or IP addresses).
    pub api_names: Vec<String>,
    pub lifetime_ms: u64,
}

pub struct ClusterCa {
    /// The two files as given, for a joining node (`POST /v1/cluster/ca`).
    certs_pem: String,
    key_pem: String,
    trusted: Vec<CertificateDer<'static>>,
    /// The trusted certificate whose key this node holds.
    signing_cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    signing_not_after_ms: u64,
}

impl ClusterCa {
    /// Reads the CA's certificates (`certs_path`, PEM, one or more) and key (`key_path`, PEM,
    /// not readable by others).
    pub fn load(certs_path: &Path, key_path: &Path) -> Result<ClusterCa, CaError> {
        let certs = read_small(certs_path)?;
        let key_meta = std::fs::metadata(key_path).map_err(|error| CaError::Read {
            path: key_path.display().to_string(),
            error,
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = key_meta.permissions().mode() & 0o777;
            if mode & 0o007 != 0 {
                return Err(CaError::KeyReadable {
                    path: key_path.display().to_string(),
                    mode,
                });
            }
        }
        let key = read_small(key_path)?;
        Self::from_pem(&certs, &key, &certs_path.display().to_string())
    }

    /// The CA from PEM text; `what` names the certificates' source in errors.
    pub fn from_pem(certs_pem: &str, key_pem: &str, what: &str) -> Result<ClusterCa, CaError> {
        let trusted = parse_certificates(certs_pem, what)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::BadKey {
            what: format!("the key of {what}"),
            error: e.to_string(),
        })?;
        let signing_cert = trusted
            .iter()
            .find(|der| {
                x509_parser::parse_x509_certificate(der)
                    .is_ok_and(|(_, cert)| cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
            })
            .cloned()
            .ok_or_else(|| CaError::KeyMatchesNone { what: what.to_string() })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&signing_cert).map_err(|e| CaError::BadCertificate {
            what: what.to_string(),
            error: e.to_string(),
        })?;
        let signing_not_after_ms = u64::try_from(parsed.validity().not_after.timestamp())
            .unwrap_or(0)
            .saturating_mul(1000);
        let issuer = Issuer::from_ca_cert_der(&signing_cert, key)?;
        Ok(ClusterCa {
            certs_pem: certs_pem.to_string(),
            key_pem: key_pem.to_string(),
            trusted,
            signing_cert,
            issuer,
            signing_not_after_ms,
        })
    }

    /// Every certificate this node trusts as the cluster's CA.
    pub fn trusted(&self) -> &[CertificateDer<'static>] {
        &self.trusted
    }

    /// The certificates and the key, in PEM, as the node was given them.
    pub fn pem(&self) -> (&str, &str) {
        (&self.certs_pem, &self.key_pem)
    }

    /// `sha256:` and the hex SHA-256 of the signing certificate's DER: what a joining node
    /// pins (`--join-ca-sha256`).
    pub fn signing_sha256(&self) -> String {
        certificate_sha256(&self.signing_cert)
    }

    /// Issues a node certificate valid from an hour before `now_ms` (clocks differ) for
    /// `request.lifetime_ms`, or until the signing CA certificate expires if sooner.
    pub fn issue(&self, request: &NodeCertRequest, now_ms: u64) -> Result<Issued, CaError> {
        let not_before_ms = now_ms.saturating_sub(CLOCK_SLACK_MS);
        let not_after_ms = now_ms
            .saturating_add(request.lifetime_ms)
            .min(self.signing_not_after_ms);
        if not_after_ms <= now_ms {
            return Err(CaError::Expired);
        }
        let mut names = vec![peer_name(request.node_id)];
        for name in &request.api_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, peer_name(request.node_id));
        params.distinguished_name = dn;
        params.not_before = to_time(not_before_ms);
        params.not_after = to_time(not_after_ms);
        params.serial_number = Some(random_serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            chain: vec![cert.der().clone(), self.signing_cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_before_ms,
            not_after_ms,
        })
    }
}

/// How far before "now" a certificate's validity starts, for peers whose clocks are behind.
const CLOCK_SLACK_MS: u64 = 60 * 60 * 1000;

/// A new CA: a self-signed certificate valid for `lifetime_ms` from `now_ms`, and its key,
/// both in PEM. `name` goes into the certificate's subject.
pub fn create_ca(name: &str, now_ms: u64, lifetime_ms: u64) -> Result<(String, String), CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Flotilla cluster CA {name}"));
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = to_time(now_ms.saturating_sub(CLOCK_SLACK_MS));
    params.not_after = to_time(now_ms.saturating_add(lifetime_ms));
    params.serial_number = Some(random_serial());
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The certificates in PEM text, in order.
pub fn parse_certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| CaError::BadCertificate {
            what: what.to_string(),
            error: e.to_string(),
        })?;
        x509_parser::parse_x509_certificate(&cert).map_err(|e| CaError::BadCertificate {
            what: what.to_string(),
            error: e.to_string(),
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(CaError::NoCertificate { what: what.to_string() });
    }
    Ok(certs)
}

/// The text of a CA file, at most `MAX_CA_FILE_BYTES`.
pub(crate) fn read_small(path: &Path) -> Result<String, CaError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|error| CaError::Read {
        path: shown.clone(),
        error,
    })?;
    if meta.len() > MAX_CA_FILE_BYTES {
        return Err(CaError::TooLarge { path: shown });
    }
    std::fs::read_to_string(path).map_err(|error| CaError::Read { path: shown, error })
}

fn to_time(ms: u64) -> time::OffsetDateTime {
    let seconds = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    // Past year 9999 X.509 has no encoding; rcgen would refuse it.
    let seconds = seconds.min(253_402_300_799);
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // A positive integer of 16 bytes at most, as RFC 5280 asks.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    #[test]
    fn peer_names_round_trip_and_reject_lookalikes() {
        assert_eq!(node_id_of_peer_name(&peer_name(7)), Some(7));
        assert_eq!(node_id_of_peer_name(&peer_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "node-.flotilla",
            "node-07.flotilla",
            "node-1.flotilla.evil",
            "xnode-1.flotilla",
            "node-1x.flotilla",
            "node-99999999999999999999.flotilla",
        ] {
            assert_eq!(node_id_of_peer_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_node_certificate_names_the_node_and_is_signed_by_the_key_holder() {
        let now_ms = 1_800_000_000_000;
        let (cert, key) = create_ca("t", now_ms, 365 * DAY_MS).unwrap();
        let ca = ClusterCa::from_pem(&cert, &key, "test").unwrap();
        let request = NodeCertRequest {
            node_id: 3,
            api_names: vec!["127.0.0.3".into(), "localhost".into()],
            lifetime_ms: 30 * DAY_MS,
        };
        let issued = ca.issue(&request, now_ms).unwrap();
        assert_eq!(issued.not_after_ms, now_ms + 30 * DAY_MS);
        let (_, parsed) = x509_parser::parse_x509_certificate(&issued.chain[0]).unwrap();
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(names.iter().any(|n| n.contains("node-3.flotilla")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("IPAddress(7f:00:00:03)")), "{names:?}");
        assert_eq!(peer_node_id(&issued.chain[0]), Some(3));
        assert_eq!(peer_node_id(&issued.chain[1]), None, "a CA certificate names no node");
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(&issued.chain[1]).unwrap();
        assert!(parsed.verify_signature(Some(ca_parsed.public_key())).is_ok());
        // Capped by the CA's own expiry.
        let late = ca.issue(&request, now_ms + 350 * DAY_MS).unwrap();
        assert!(late.not_after_ms <= now_ms + 365 * DAY_MS);
        assert!(matches!(
            ca.issue(&request, now_ms + 366 * DAY_MS),
            Err(CaError::Expired)
        ));
    }

    #[test]
    fn the_key_must_belong_to_a_bundled_certificate() {
        let now_ms = 1_800_000_000_000;
        let (old_cert, old_key) = create_ca("old", now_ms, 365 * DAY_MS).unwrap();
        let (new_cert, new_key) = create_ca("new", now_ms, 365 * DAY_MS).unwrap();
        let bundle = format!("{old_cert}{new_cert}");
        let ca = ClusterCa::from_pem(&bundle, &new_key, "bundle").unwrap();
        assert_eq!(ca.trusted().len(), 2);
        assert!(ClusterCa::from_pem(&bundle, &old_key, "bundle").is_ok());
        assert!(matches!(
            ClusterCa::from_pem(&old_cert, &new_key, "old"),
            Err(CaError::KeyMatchesNone { .. })
        ));
        assert!(matches!(
            ClusterCa::from_pem("not pem", &new_key, "x"),
            Err(CaError::NoCertificate { .. })
        ));
        assert!(matches!(
            ClusterCa::from_pem(&new_cert, "junk", "x"),
            Err(CaError::BadKey { .. })
        ));
    }
}
