//! `flotilla-node fetch-source`: the source container of a Kubernetes job pod. It downloads
//! the attempt's checkout from the cluster's API (`grant.rs`) and unpacks it into the pod's
//! workspace before the job's container starts, so a pod needs neither git, nor the
//! repository's token, nor a route to the forge: only one to the nodes.
//!
//! Every node is tried in turn until one serves the archive or the deadline passes: a node
//! that is preparing the checkout, finds no leader to catch up with, or cannot be reached
//! is tried again after a pause (its `Retry-After`, 1 to 10 s); an answer that says the grant
//! or the attempt is wrong ends the fetch at once with that answer. The archive is written
//! beside the workspace's files, bounded, unpacked with the same guards as the process
//! provider's (`flotilla_providers::source_archive`: no entry lands outside), then removed.
//! Its last line on failure is the reason the pod reports (`PodView`'s source failure).
//!
//! Then, one after the other, the artifacts of the jobs the attempt needs (`--inputs`), from
//! `/inputs/<n>` beside each node's source URL, the same way: each is a zstd-compressed tar,
//! unpacked with the same guards. A job of a pipeline that does not come from a repository
//! has artifacts alone (`--checkout false`).
//!
//! Before the artifacts, the job's cache (`--cache`), from `/cache`: a speed-up, so a cache
//! no node serves within `CACHE_TIMEOUT_MS` is skipped with a line saying so, never a failure.

use flotilla_providers::{
    SOURCE_CA_VAR, SOURCE_CACHE_VAR, SOURCE_CHECKOUT_VAR, SOURCE_GRANT_VAR, SOURCE_INPUTS_VAR, SOURCE_URLS_VAR,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The helper's options; the pod passes the URLs, grant and CA as variables.
#[derive(clap::Parser, Debug)]
#[command(
    name = "flotilla-node fetch-source",
    about = "Downloads a job attempt's source from the cluster and unpacks it (a Kubernetes job pod's source container)"
)]
pub struct FetchOptions {
    /// Directory the source is unpacked into (the pod's workspace).
    #[arg(long)]
    pub into: PathBuf,
    /// The attempt's source on each node, comma-separated, tried in turn.
    #[arg(long, env = SOURCE_URLS_VAR, value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    /// The attempt's grant (from the attempt's Secret).
    #[arg(long, env = SOURCE_GRANT_VAR, hide_env_values = true)]
    pub grant: String,
    /// The cluster CA's certificates (PEM) to trust the nodes by (absent: the nodes speak
    /// plain HTTP).
    #[arg(long, env = SOURCE_CA_VAR, hide_env_values = true)]
    pub ca_pem: Option<String>,
    /// Give up after this long.
    #[arg(long, default_value_t = 600_000)]
    pub timeout_ms: u64,
    /// Largest archive accepted (the nodes' checkout limit).
    #[arg(long, default_value_t = 512 << 20)]
    pub max_bytes: u64,
    /// Whether there is a checkout to fetch (`false`: artifacts alone).
    #[arg(long, env = SOURCE_CHECKOUT_VAR, default_value_t = true, action = clap::ArgAction::Set)]
    pub checkout: bool,
    /// How many artifacts to fetch after the checkout.
    #[arg(long, env = SOURCE_INPUTS_VAR, default_value_t = 0)]
    pub inputs: u32,
    /// Whether to restore the job's cache (before the artifacts; skipped if no node has it).
    #[arg(long, env = SOURCE_CACHE_VAR, default_value_t = false, action = clap::ArgAction::Set)]
    pub cache: bool,
    /// Largest artifact or cache accepted (the ceiling of the per-job limit).
    #[arg(long, default_value_t = crate::artifacts::MAX_BLOB_BYTES)]
    pub max_input_bytes: u64,
}

/// What one download is and how it is unpacked.
#[derive(Clone, Copy, Debug)]
enum Payload {
    /// The checkout, a tar archive.
    Checkout,
    /// Artifact `n`, a tar compressed with zstd.
    Input(u32),
    /// The job's cache, a tar compressed with zstd.
    Cache,
}

/// Longest the cache is waited for before the job starts without it.
pub const CACHE_TIMEOUT_MS: u64 = 60_000;

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::Checkout => write!(f, "the source"),
            Payload::Input(n) => write!(f, "artifact {n}"),
            Payload::Cache => write!(f, "the cache"),
        }
    }
}

/// Where artifact `n` is on the node whose source is at `source_url`.
fn input_url(source_url: &str, n: u32) -> String {
    let base = source_url.strip_suffix("/source").unwrap_or(source_url);
    format!("{base}/inputs/{n}")
}

/// Where the cache is on the node whose source is at `source_url`.
fn cache_url(source_url: &str) -> String {
    let base = source_url.strip_suffix("/source").unwrap_or(source_url);
    format!("{base}/cache")
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the CA in {SOURCE_CA_VAR}: {0}")]
    Ca(String),
    #[error("{url} refused {what}: HTTP {status}: {message}")]
    Refused {
        what: String,
        url: String,
        status: u16,
        message: String,
    },
    #[error("no node served {what} within {timeout_ms} ms; last: {last}")]
    TimedOut {
        what: String,
        timeout_ms: u64,
        last: String,
    },
    #[error("{what} is larger than {max_bytes} bytes")]
    TooLarge { what: String, max_bytes: u64 },
    #[error("writing {what} into {dir}: {error}")]
    Write {
        what: String,
        dir: PathBuf,
        error: std::io::Error,
    },
    #[error("unpacking {what}: {error}")]
    Unpack { what: String, error: std::io::Error },
}

/// What one try of one node came to.
enum Try {
    Fetched(u64),
    /// Worth trying again (this node or another), after at least this long.
    Again {
        why: String,
        after: Duration,
    },
}

/// Downloads and unpacks the source and the artifacts as `options` say; progress on stderr.
pub async fn run(options: &FetchOptions) -> Result<(), FetchError> {
    let client = client(options.ca_pem.as_deref())?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(options.timeout_ms);
    if options.checkout {
        fetch(&client, &options.urls, Payload::Checkout, options, deadline).await?;
    }
    if options.cache {
        let urls: Vec<String> = options.urls.iter().map(|u| cache_url(u)).collect();
        let cache_deadline = deadline.min(tokio::time::Instant::now() + Duration::from_millis(CACHE_TIMEOUT_MS));
        if let Err(e) = fetch(&client, &urls, Payload::Cache, options, cache_deadline).await {
            eprintln!("starting without the cache: {e}");
        }
    }
    for n in 0..options.inputs {
        let urls: Vec<String> = options.urls.iter().map(|u| input_url(u, n)).collect();
        fetch(&client, &urls, Payload::Input(n), options, deadline).await?;
    }
    Ok(())
}

/// Downloads `what` from the first of `urls` that serves it, and unpacks it.
async fn fetch(
    client: &reqwest::Client,
    urls: &[String],
    what: Payload,
    options: &FetchOptions,
    deadline: tokio::time::Instant,
) -> Result<(), FetchError> {
    let part = options.into.join(".flotilla-source.tar.part");
    let mut last = String::from("no node tried");
    let mut pause = Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        let mut wait = pause;
        for url in urls {
            match fetch_once(client, url, what, options, &part).await? {
                Try::Fetched(bytes) => {
                    let unpacked = match what {
                        Payload::Checkout => flotilla_providers::source_archive::unpack(&part, &options.into),
                        Payload::Input(_) | Payload::Cache => {
                            flotilla_providers::artifact_archive::unpack(&part, &options.into)
                        }
                    };
                    let _ = std::fs::remove_file(&part);
                    unpacked.map_err(|error| FetchError::Unpack {
                        what: what.to_string(),
                        error,
                    })?;
                    eprintln!(
                        "{what}: {bytes} bytes from {url}, unpacked into {}",
                        options.into.display()
                    );
                    return Ok(());
                }
                Try::Again { why, after } => {
                    eprintln!("{what}: {why}");
                    last = why;
                    wait = wait.max(after);
                }
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(wait.min(left)).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
    let _ = std::fs::remove_file(&part);
    Err(FetchError::TimedOut {
        what: what.to_string(),
        timeout_ms: options.timeout_ms,
        last,
    })
}

pub(crate) fn client(ca_pem: Option<&str>) -> Result<reqwest::Client, FetchError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    let tls = match ca_pem.filter(|p| !p.trim().is_empty()) {
        Some(pem) => {
            let certs =
                flotilla_pki::parse_certificates(pem, SOURCE_CA_VAR).map_err(|e| FetchError::Ca(e.to_string()))?;
            flotilla_pki::client::ClientTls::new(certs)
        }
        // Plain HTTP (a cluster under --insecure-plaintext): nothing to trust.
        None => flotilla_pki::client::ClientTls::new(Vec::new()),
    };
    builder
        .tls_backend_preconfigured(tls.rustls_config())
        .build()
        .map_err(|e| FetchError::Ca(e.to_string()))
}

async fn fetch_once(
    client: &reqwest::Client,
    url: &str,
    what: Payload,
    options: &FetchOptions,
    part: &Path,
) -> Result<Try, FetchError> {
    let max_bytes = match what {
        Payload::Checkout => options.max_bytes,
        Payload::Input(_) | Payload::Cache => options.max_input_bytes,
    };
    let too_large = || FetchError::TooLarge {
        what: what.to_string(),
        max_bytes,
    };
    let again = |why: String, after: Duration| Ok(Try::Again { why, after });
    let mut response = match client.get(url).bearer_auth(&options.grant).send().await {
        Ok(r) => r,
        Err(e) => return again(format!("{url}: {e}"), Duration::ZERO),
    };
    let status = response.status();
    if !status.is_success() {
        let after = retry_after(&response);
        let message = error_message(response).await;
        if worth_retrying(status) {
            return again(format!("{url}: HTTP {}: {message}", status.as_u16()), after);
        }
        return Err(FetchError::Refused {
            what: what.to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            message,
        });
    }
    // Read now: reqwest's length is what is left to read, zero once the body is read.
    let expected = response.content_length();
    if expected.is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    let write_error = |error| FetchError::Write {
        what: what.to_string(),
        dir: options.into.clone(),
        error,
    };
    let mut file = std::fs::File::create(part).map_err(write_error)?;
    let mut bytes = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                bytes += chunk.len() as u64;
                if bytes > max_bytes {
                    return Err(too_large());
                }
                file.write_all(&chunk).map_err(write_error)?;
            }
            Ok(None) => break,
            // Cut off mid-way (the node stopped): the whole archive again, from any node.
            Err(e) => {
                return again(
                    format!("{url}: the download broke after {bytes} bytes: {e}"),
                    Duration::ZERO,
                );
            }
        }
    }
    file.sync_all().map_err(write_error)?;
    if let Some(expected) = expected.filter(|n| *n != bytes) {
        return again(format!("{url}: {bytes} bytes arrived of {expected}"), Duration::ZERO);
    }
    Ok(Try::Fetched(bytes))
}

/// A node's `Retry-After` (seconds, at most 10), or zero.
pub(crate) fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, |s| Duration::from_secs(s.min(10)))
}

/// Whether a node that answered `status` may serve another try: busy, preparing, or
/// between leaders. Any other refusal is an answer.
pub(crate) fn worth_retrying(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// The `error.message` of an API error body, or its status text.
pub(crate) async fn error_message(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_fetched_beside_each_nodes_source() {
        assert_eq!(
            input_url("https://10.0.0.1:8443/v1/jobs/7/attempts/2/source", 1),
            "https://10.0.0.1:8443/v1/jobs/7/attempts/2/inputs/1"
        );
        assert_eq!(
            cache_url("https://10.0.0.1:8443/v1/jobs/7/attempts/2/source"),
            "https://10.0.0.1:8443/v1/jobs/7/attempts/2/cache"
        );
    }

    #[test]
    fn a_pod_with_artifacts_alone_says_so() {
        use clap::Parser;
        let o = FetchOptions::try_parse_from([
            "fetch-source",
            "--into",
            "/workspace",
            "--urls",
            "https://a/v1/jobs/1/attempts/1/source",
            "--grant",
            "g",
            "--checkout",
            "false",
            "--inputs",
            "2",
            "--cache",
            "true",
        ])
        .unwrap();
        assert!(!o.checkout && o.cache);
        assert_eq!(o.inputs, 2);
        let o = FetchOptions::try_parse_from(["fetch-source", "--into", "/w", "--urls", "u", "--grant", "g"]).unwrap();
        assert!(o.checkout && o.inputs == 0 && !o.cache, "a checkout alone, as before");
    }
}
