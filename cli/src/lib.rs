//! What the workspace's other REST clients share with the `flotilla` CLI (the load generators
//! of `bench/` read `--server` and send `--token` the same way), and the CLI's idempotency keys.

/// A `--server` list (comma-separated `host:port` or URLs) as base URLs, in order: `https://`
/// where no scheme is given (nodes serve HTTPS unless run `--insecure-plaintext`), no
/// trailing slash, empty items skipped.
pub fn server_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with("http://") || s.starts_with("https://") {
                s.trim_end_matches('/').to_string()
            } else {
                format!("https://{}", s.trim_end_matches('/'))
            }
        })
        .collect()
}

/// An HTTP client builder whose TLS trusts the cluster CA in `ca_file` (`--ca-file`,
/// `FLOTILLA_CA_FILE`) and nothing else; without one, an `https://` server is trusted by no
/// certificate, and every request to it fails with a message saying to give the CA.
pub fn http_client_builder(ca_file: Option<&std::path::Path>) -> anyhow::Result<reqwest::ClientBuilder> {
    let tls = match ca_file {
        Some(path) => flotilla_pki::ClientTls::from_file(path).map_err(|e| anyhow::anyhow!("--ca-file: {e}"))?,
        None => flotilla_pki::ClientTls::new(Vec::new()),
    };
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls.rustls_config()))
}

/// Whether `error` (a request's, with its causes) is a server certificate this client does
/// not trust.
pub fn is_untrusted_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A fresh idempotency key for one invocation of the CLI: `cli-` and 32 random hex digits.
pub fn invocation_key() -> String {
    format!("cli-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// The headers that carry `token` (`Authorization: Bearer`, marked sensitive so it is never
/// printed); none for no token or an empty one.
pub fn token_headers(token: Option<&str>) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("--token (FLOTILLA_TOKEN) holds characters no header may carry"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// A new token secret: `flt_` and 64 hex digits (256 bits from the operating system's random
/// source), the form flotilla-node accepts for `--admin-token-file` and bootstrap.
pub fn token_secret() -> String {
    random_hex_secret("flt_")
}

/// A new key-encryption key for the secrets' key file (`--secrets-key-file`): `fsk_` and
/// 64 hex digits.
pub fn secrets_key() -> String {
    random_hex_secret("fsk_")
}

fn random_hex_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Writes `text` to `path` readable by its owner alone (mode 0600), replacing what was there.
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through open: narrow it as well.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_secrets_are_distinct_and_well_formed() {
        let (a, b) = (super::token_secret(), super::token_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 68);
        assert!(a.starts_with("flt_") && a[4..].bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
    }

    #[test]
    fn private_files_are_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::write_private(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn invocation_keys_are_distinct_and_fit_the_key_limit() {
        let (a, b) = (super::invocation_key(), super::invocation_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("cli-") && a[4..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn server_lists_become_base_urls() {
        assert_eq!(
            super::server_urls(" 127.0.0.1:1, http://h:2/ ,,https://h:3"),
            vec!["https://127.0.0.1:1", "http://h:2", "https://h:3"]
        );
        assert!(super::server_urls(" , ").is_empty());
    }
}
