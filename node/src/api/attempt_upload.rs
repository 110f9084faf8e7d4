//! `PUT /v1/jobs/{id}/attempts/{attempt}/uploads/{purpose}/{digest}`: a live attempt's own
//! files, sent by a worker whose files the leader cannot read (a Kubernetes pod's collect
//! container, `flotilla-node put-files`), for the leader to keep as the job's artifacts or
//! cache (`flotilla_providers::uploads`). Public as a route: the attempt's upload grant is
//! the credential, checked against this node's state before a byte is read, as the source
//! grant is for downloads (`attempt_source.rs`); neither grant opens the other's routes.
//!
//! Any node takes it: the blob goes into the node's blob store under its digest, checked on
//! arrival and bounded by the job's limit, and the leader fetches it from there when it
//! collects the attempt (`Collector`). A blob that no record ever names is swept like any
//! other (`sweep.rs`).

use super::attempt_source::{admitted_by, grant_of, keyring_of, parse_attempt};
use super::{ApiError, AppState};
use crate::artifacts::BlobError;
use crate::source::grant::Scope;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_providers::uploads::CollectPurpose;
use futures::StreamExt;

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UploadReceived {
    /// The blob's SHA-256, as it was checked.
    pub digest: String,
    pub size_bytes: u64,
}

#[utoipa::path(put, path = "/v1/jobs/{id}/attempts/{attempt}/uploads/{purpose}/{digest}", tag = "jobs",
    params(("id" = u64, Path), ("attempt" = u32, Path),
        ("purpose" = String, Path, description = "`artifacts` or `cache`"),
        ("digest" = String, Path, description = "the blob's SHA-256, lowercase hexadecimal")),
    request_body(content = Vec<u8>, description = "the files: a tar archive compressed with zstd", content_type = "application/octet-stream"),
    security(("grant" = [])),
    responses((status = 201, description = "received and checked against its digest", body = UploadReceived),
        (status = 400, description = "not a purpose or not a digest (the field named)", body = super::openapi::ErrorBodyDoc),
        (status = 401, description = "no upload grant, or not this attempt's", body = super::openapi::ErrorBodyDoc),
        (status = 404, description = "no such attempt, or its job keeps no files of that purpose", body = super::openapi::ErrorBodyDoc),
        (status = 410, description = "the attempt is over", body = super::openapi::ErrorBodyDoc),
        (status = 413, description = "larger than the job's limit", body = super::openapi::ErrorBodyDoc),
        (status = 422, description = "the bytes are not the digest's", body = super::openapi::ErrorBodyDoc),
        (status = 503, description = "no leader to catch up with, or the blob could not be stored: try again (Retry-After)", body = super::openapi::ErrorBodyDoc)))]
pub async fn upload(
    State(app): State<AppState>,
    Path((id, attempt, purpose, digest)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let (job, attempt) = parse_attempt(&id, &attempt)?;
    let purpose = CollectPurpose::parse(&purpose)
        .ok_or_else(|| ApiError::bad_request("purpose", "purpose: `artifacts` or `cache`"))?;
    if !flotilla_state_machine::is_digest(&digest) {
        return Err(ApiError::bad_request(
            "digest",
            "digest: a SHA-256 in lowercase hexadecimal",
        ));
    }
    let presented = grant_of(&headers)?;
    let keyring = keyring_of(&app)?;
    let max_bytes = admitted_by(&app, &keyring, Scope::Upload, (job, attempt), &presented, |state, j| {
        let declared = match purpose {
            CollectPurpose::Artifacts => j.spec.artifacts.is_some(),
            CollectPurpose::Cache => j.spec.cache.as_ref().is_some_and(|c| c.policy.pushes()),
        };
        if !declared {
            return Err(ApiError::not_found(format!(
                "job {} saves no {}",
                job.0,
                purpose.field()
            )));
        }
        Ok(match purpose {
            CollectPurpose::Artifacts => state.limits().max_artifact_bytes_per_job,
            CollectPurpose::Cache => state.limits().max_cache_bytes_per_tenant,
        }
        .min(crate::artifacts::MAX_BLOB_BYTES))
    })
    .await?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the {} take more than the job's limit of {max_bytes} bytes",
                purpose.field()
            ),
        )
    };
    let declared_bytes = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_bytes.is_some_and(|n| n > max_bytes) {
        return Err(too_large());
    }
    let chunks = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(|e| BlobError::Io(std::io::Error::other(e.to_string()))));
    let received = crate::artifacts::receive_checked(&app.blobs.store, &digest, chunks, max_bytes).await;
    match received {
        Ok(path) => {
            let size_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or_default();
            tracing::info!(job = %job, attempt, purpose = purpose.field(), size_bytes, "files uploaded by a worker");
            Ok((StatusCode::CREATED, axum::Json(UploadReceived { digest, size_bytes })).into_response())
        }
        Err(BlobError::DigestMismatch { actual, .. }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "digest_mismatch",
            format!("the bytes received have the digest {actual}, not the one named"),
        )),
        Err(BlobError::TooLarge { .. }) => Err(too_large()),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage", e.to_string()).retry_after(5)),
    }
}
