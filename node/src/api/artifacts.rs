//! `/v1/jobs/{id}/artifacts`: what a job kept (its record and the files in it) and the blob
//! itself, from any node. A node that lacks the blob (it was down when it was made) fetches it
//! from a peer first; the bytes sent are checked against the record's digest as they are read,
//! and a damaged copy ends the response with an error instead of its last bytes.

use super::{ApiError, AppState, ReadQuery, parse_id, parse_query, read_response};
use crate::auth::TenantScope;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{ArtifactRecord, JobId};
use serde::Serialize;

/// Most file names a listing returns.
pub const MAX_LISTED_FILES: usize = 1000;

/// A job's artifact as `GET /v1/jobs/{id}/artifacts` answers.
#[derive(Serialize)]
struct ArtifactView<'a> {
    #[serde(flatten)]
    record: &'a ArtifactRecord,
    /// The files in the archive (path and size), the first `MAX_LISTED_FILES`.
    files: Vec<FileView>,
    /// Whether the archive holds more files than listed.
    files_truncated: bool,
}

#[derive(Serialize)]
struct FileView {
    path: String,
    size_bytes: u64,
}

/// The record of `id`'s artifact, for a caller that may read the job; 404 naming why not.
async fn record_of(
    app: &AppState,
    scope: &TenantScope,
    id: JobId,
    raw: Option<String>,
) -> Result<(ArtifactRecord, u64), ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let disk = app.machine.disk();
    let Some(job) = super::records::job(&data.state, disk, id)?.filter(|j| scope.admits(&j.tenant)) else {
        return Err(super::retention::job_gone(&data.state, disk, scope, id));
    };
    match data.state.artifacts().get(id) {
        Some(r) => Ok((r.clone(), applied)),
        None => {
            let why = if job.spec.artifacts.is_none() {
                "keeps no artifacts (its spec has no `artifacts`)"
            } else if job.state.is_active() || matches!(job.state, flotilla_state_machine::JobState::Pending) {
                "has not kept its artifacts yet"
            } else {
                "holds no artifacts (none were kept, or they expired)"
            };
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_artifacts",
                format!("job {id} {why}"),
            ))
        }
    }
}

/// A blob to send: an artifact or a cache, as its record names it.
pub(super) struct BlobRef {
    pub digest: String,
    pub size_bytes: u64,
    /// What it is, for messages (`the artifact of job 7`).
    pub what: String,
    /// The name a download is saved as.
    pub filename: String,
}

impl From<&ArtifactRecord> for BlobRef {
    fn from(r: &ArtifactRecord) -> BlobRef {
        BlobRef {
            digest: r.digest.to_string(),
            size_bytes: r.size_bytes,
            what: format!("the artifact of job {}", r.job),
            filename: format!("job-{}-artifacts.tar.zst", r.job.0),
        }
    }
}

impl From<&flotilla_state_machine::CacheRecord> for BlobRef {
    fn from(r: &flotilla_state_machine::CacheRecord) -> BlobRef {
        BlobRef {
            digest: r.digest.to_string(),
            size_bytes: r.size_bytes,
            what: format!("cache {:?}", r.key.as_str()),
            filename: format!("cache-{}.tar.zst", r.key),
        }
    }
}

/// The blob on this node, fetched from a peer if it is not here.
async fn blob_of(app: &AppState, blob: &BlobRef) -> Result<std::path::PathBuf, ApiError> {
    let fetch = app.blobs.fetch(&blob.digest);
    match tokio::time::timeout(crate::artifacts::copy_timeout(blob.size_bytes), fetch).await {
        Ok(Ok(path)) => Ok(path),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{} is on no node that answers: {e}", blob.what),
        )
        .retry_after(5)),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("fetching {} from a peer timed out", blob.what),
        )
        .retry_after(5)),
    }
}

#[utoipa::path(get, path = "/v1/jobs/{id}/artifacts", tag = "jobs", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the job's artifact: its blob's digest and size, its expiry, and the files in it"),
              (status = 404, description = "no such job, or it kept no artifacts (`no_artifacts`)", body = super::openapi::ErrorBodyDoc),
              super::openapi::RemovedId, super::openapi::StandardErrors))]
pub async fn show(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    let (record, applied) = record_of(&app, &scope, id, raw).await?;
    let path = blob_of(&app, &BlobRef::from(&record)).await?;
    let listed =
        tokio::task::spawn_blocking(move || flotilla_providers::artifact_archive::list(&path, MAX_LISTED_FILES))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let (files, files_truncated) = listed.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            format!("reading the artifact of job {id}: {e}"),
        )
    })?;
    let view = ArtifactView {
        record: &record,
        files: files
            .into_iter()
            .map(|(path, size_bytes)| FileView { path, size_bytes })
            .collect(),
        files_truncated,
    };
    Ok(read_response(applied, &view))
}

#[utoipa::path(get, path = "/v1/jobs/{id}/artifacts/archive", tag = "jobs", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the job's artifact: a tar archive compressed with zstd, checked against its digest as it is sent", content_type = "application/zstd"),
              (status = 404, description = "no such job, or it kept no artifacts (`no_artifacts`)", body = super::openapi::ErrorBodyDoc),
              super::openapi::RemovedId, super::openapi::StandardErrors))]
pub async fn archive(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    let (record, applied) = record_of(&app, &scope, id, raw).await?;
    serve_blob(&app, &BlobRef::from(&record), Some(applied)).await
}

/// `record`'s blob as a response (from this node, fetched from a peer first if missing),
/// checked against its digest as it is sent; with the applied index of the read, if any.
pub(super) async fn serve_blob(app: &AppState, record: &BlobRef, applied: Option<u64>) -> Result<Response, ApiError> {
    blob_of(app, record).await?;
    let chunks = crate::artifacts::read_checked(
        app.blobs.store.clone(),
        &record.digest,
        crate::artifacts::BLOB_CHUNK_BYTES,
    )
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()).retry_after(5))?;
    let body = axum::body::Body::from_stream(chunks);
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zstd"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(record.size_bytes));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", record.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&record.digest) {
        headers.insert(HeaderName::from_static("x-flotilla-digest"), v);
    }
    if let Some(applied) = applied {
        headers.insert(
            HeaderName::from_static(super::APPLIED_INDEX_HEADER),
            HeaderValue::from(applied),
        );
    }
    Ok(resp)
}
