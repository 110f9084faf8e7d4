//! `flotilla-node put-files`: the collect container of a Kubernetes job pod
//! (`flotilla_providers::uploads`). It runs beside the job's container, waits until the
//! job's wrapper has written its exit code, packs the paths the job keeps (its artifacts,
//! its cache) with the same code and limits the other providers' workers are packed with,
//! uploads each blob to a node with the attempt's upload grant, and writes what came of it
//! as its report (the container's termination message), which the leader reads.
//!
//! It never fails the pod: every outcome, an upload that no node took included, is a line
//! of the report, and the leader decides what it means for the job as it does for a pack
//! that failed on its own disk. Every wait is bounded: the exit code by `--wait-ms` (the
//! pod's deadline ends it sooner), each upload by `--upload-timeout-ms`.

use flotilla_providers::artifact_archive::{PackLimits, pack};
use flotilla_providers::uploads::{
    CollectPurpose, EXIT_FILE_VAR, MAX_REASON_BYTES, REPORT_FILE_VAR, UPLOAD_GRANT_VAR, UPLOADS_VAR, UploadOutcome,
    UploadReport, UploadSpec, Uploads, upload_url,
};
use flotilla_providers::{SOURCE_CA_VAR, SOURCE_URLS_VAR};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Parser, Debug)]
#[command(
    name = "flotilla-node put-files",
    about = "Packs and uploads the files a job attempt keeps once its steps end (a Kubernetes job pod's collect container)"
)]
pub struct PutOptions {
    /// The job's workspace, which the paths are relative to.
    #[arg(long)]
    pub from: PathBuf,
    /// A writable directory outside the workspace for the blobs being packed.
    #[arg(long)]
    pub scratch: PathBuf,
    /// The attempt's source on each node, comma-separated: uploads go beside it, tried in
    /// turn.
    #[arg(long, env = SOURCE_URLS_VAR, value_delimiter = ',', required = true)]
    pub urls: Vec<String>,
    /// The attempt's upload grant (from the attempt's Secret).
    #[arg(long, env = UPLOAD_GRANT_VAR, hide_env_values = true)]
    pub grant: String,
    /// The cluster CA's certificates (PEM) (absent: the nodes speak plain HTTP).
    #[arg(long, env = SOURCE_CA_VAR, hide_env_values = true)]
    pub ca_pem: Option<String>,
    /// What to pack and upload, as JSON (`Uploads`).
    #[arg(long, env = UPLOADS_VAR)]
    pub uploads: String,
    /// The file the job's wrapper writes its exit code to when its steps end.
    #[arg(long, env = EXIT_FILE_VAR)]
    pub exit_file: PathBuf,
    /// Where the report goes (the container's termination message file).
    #[arg(long, env = REPORT_FILE_VAR)]
    pub report_file: PathBuf,
    /// Longest wait for the steps to end.
    #[arg(long, default_value_t = 7 * 24 * 3600 * 1000)]
    pub wait_ms: u64,
    /// Longest time one blob's upload is tried for, over every node.
    #[arg(long, default_value_t = 600_000)]
    pub upload_timeout_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("{UPLOADS_VAR}: {0}")]
    Uploads(serde_json::Error),
    #[error("the steps did not end within {0} ms")]
    NoExit(u64),
    #[error("writing the report to {path}: {error}")]
    Report { path: PathBuf, error: std::io::Error },
}

/// How often the exit file is looked for.
const EXIT_POLL_MS: u64 = 200;

/// Waits for the steps, packs, uploads, and writes the report; progress on stderr.
pub async fn run(options: &PutOptions) -> Result<(), PutError> {
    let uploads: Uploads = serde_json::from_str(&options.uploads).map_err(PutError::Uploads)?;
    let exit_code = wait_for_exit(&options.exit_file, options.wait_ms).await?;
    eprintln!("the steps ended with exit code {exit_code}");
    let mut report = UploadReport::default();
    for purpose in [CollectPurpose::Artifacts, CollectPurpose::Cache] {
        let Some(spec) = uploads.get(purpose) else { continue };
        let outcome = match spec.wanted_after(exit_code) {
            false => UploadOutcome::Skipped { exit_code },
            true => put(options, purpose, spec).await,
        };
        eprintln!("{}: {outcome:?}", purpose.field());
        report.set(purpose, outcome);
    }
    let text = serde_json::to_string(&report).map_err(PutError::Uploads)?;
    std::fs::write(&options.report_file, text).map_err(|error| PutError::Report {
        path: options.report_file.clone(),
        error,
    })
}

/// The exit code the job's wrapper wrote, once it is there whole.
async fn wait_for_exit(path: &Path, wait_ms: u64) -> Result<i32, PutError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    loop {
        // Written with a newline last: a code without one may still be being written.
        if let Ok(text) = tokio::fs::read_to_string(path).await
            && let Some(line) = text.strip_suffix('\n')
            && let Ok(code) = line.trim().parse::<i32>()
        {
            return Ok(code);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PutError::NoExit(wait_ms));
        }
        tokio::time::sleep(Duration::from_millis(EXIT_POLL_MS)).await;
    }
}

/// Packs `spec`'s paths and uploads the blob; what came of it.
async fn put(options: &PutOptions, purpose: CollectPurpose, spec: &UploadSpec) -> UploadOutcome {
    let blob = options.scratch.join(format!("{}.blob", purpose.field()));
    let _ = std::fs::remove_file(&blob);
    let (from, paths, dest) = (options.from.clone(), spec.paths.clone(), blob.clone());
    let limits = PackLimits {
        max_packed_bytes: spec.max_packed_bytes,
    };
    let packed = tokio::task::spawn_blocking(move || pack(&from, &paths, &dest, limits)).await;
    let outcome = match packed {
        Ok(Ok(packed)) => match upload(options, purpose, &blob, &packed.digest).await {
            Ok(()) => UploadOutcome::Uploaded {
                digest: packed.digest,
                size_bytes: packed.size_bytes,
                entries: packed.entries,
            },
            Err(reason) => failed(reason),
        },
        Ok(Err(e)) => failed(e.to_string()),
        Err(e) => failed(format!("packing: {e}")),
    };
    let _ = std::fs::remove_file(&blob);
    outcome
}

fn failed(mut reason: String) -> UploadOutcome {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    UploadOutcome::Failed { reason }
}

/// Sends the blob at `blob` to the first node that takes it, trying every node in turn
/// with pauses (a node's `Retry-After` honoured) until `upload_timeout_ms`; an answer that
/// says the grant, the attempt or the blob is wrong ends it at once.
async fn upload(options: &PutOptions, purpose: CollectPurpose, blob: &Path, digest: &str) -> Result<(), String> {
    let client = super::fetch::client(options.ca_pem.as_deref()).map_err(|e| e.to_string())?;
    let size = std::fs::metadata(blob).map_err(|e| e.to_string())?.len();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(options.upload_timeout_ms);
    let mut last = String::from("no node tried");
    let mut pause = Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        let mut wait = pause;
        for source_url in &options.urls {
            let url = upload_url(source_url, purpose, digest);
            let file = tokio::fs::File::open(blob).await.map_err(|e| e.to_string())?;
            let body = reqwest::Body::wrap_stream(flotilla_providers::source_archive::file_chunks(file));
            let sent = client
                .put(&url)
                .bearer_auth(&options.grant)
                .header(reqwest::header::CONTENT_LENGTH, size)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{url}: {e}");
                    eprintln!("{last}");
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                eprintln!("{}: {size} bytes uploaded to {url}", purpose.field());
                return Ok(());
            }
            let after = super::fetch::retry_after(&response);
            let message = super::fetch::error_message(response).await;
            let line = format!("{url}: HTTP {}: {message}", status.as_u16());
            if !super::fetch::worth_retrying(status) {
                return Err(format!("the {} were refused: {line}", purpose.field()));
            }
            eprintln!("{line}");
            last = line;
            wait = wait.max(after);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(wait.min(left)).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
    Err(format!(
        "no node took the {} within {} ms; last: {last}",
        purpose.field(),
        options.upload_timeout_ms
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_exit_code_is_read_only_once_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        assert!(matches!(wait_for_exit(&path, 300).await, Err(PutError::NoExit(300))));
        std::fs::write(&path, "1").unwrap();
        assert!(
            matches!(wait_for_exit(&path, 300).await, Err(PutError::NoExit(_))),
            "no newline yet"
        );
        std::fs::write(&path, "17\n").unwrap();
        assert_eq!(wait_for_exit(&path, 300).await.unwrap(), 17);
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character() {
        let UploadOutcome::Failed { reason } = failed("é".repeat(MAX_REASON_BYTES)) else {
            panic!("a failure")
        };
        assert!(reason.len() <= MAX_REASON_BYTES && reason.len() >= MAX_REASON_BYTES - 1);
    }
}
