//! `GET /v1/jobs/{id}/attempts/{attempt}/source`: a live attempt's checkout, for a worker
//! that cannot read the leader's disk (a Kubernetes pod's source container,
//! `flotilla-node fetch-source`). Public as a route, since the caller holds no API token:
//! the attempt's grant (`source::grant`) is the credential, checked against this node's state
//! before anything is prepared or read.
//!
//! Served by any node: each can make the same archive (`Sources::checkout`), so a pod never
//! depends on the leader that created it. A node that does not know the attempt catches up
//! with the cluster (a linearizable read) before it says 404; one still preparing the
//! archive answers 503 with `Retry-After`, and the helper tries the next node.
//!
//! `GET /v1/jobs/{id}/attempts/{attempt}/inputs/{n}`: the same attempt's `n`-th artifact (of
//! the jobs it needs, `State::inputs_of`), the blob as `api/artifacts.rs` serves it, behind the
//! same grant: a pod receives the files it needs from any node, as it receives its source.
//! `GET .../cache` serves the job's cache (`State::cache_for`: its tenant's latest of its key)
//! the same way.

use super::{ApiError, AppState, parse_id};
use crate::source::CheckoutState;
use crate::source::grant::Scope;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::JobId;
use std::time::Duration;

/// How long one request waits for an archive being prepared before answering 503.
const PREPARE_WAIT_MS: u64 = 20_000;
/// How often it looks again meanwhile.
const PREPARE_POLL_MS: u64 = 200;

#[utoipa::path(get, path = "/v1/jobs/{id}/attempts/{attempt}/source", tag = "jobs",
    params(("id" = u64, Path), ("attempt" = u32, Path)),
    security(("grant" = [])),
    responses((status = 200, description = "the attempt's source: a tar archive of its pipeline's commit", content_type = "application/x-tar"),
        (status = 401, description = "no grant, or not this attempt's", body = super::openapi::ErrorBodyDoc),
        (status = 404, description = "no such attempt, or its job does not run from a repository", body = super::openapi::ErrorBodyDoc),
        (status = 409, description = "the source can never be checked out (the reason)", body = super::openapi::ErrorBodyDoc),
        (status = 410, description = "the attempt is over", body = super::openapi::ErrorBodyDoc),
        (status = 503, description = "preparing the archive, or no leader to catch up with: try again (Retry-After)", body = super::openapi::ErrorBodyDoc)))]
pub async fn source(
    State(app): State<AppState>,
    Path((id, attempt)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (job, attempt) = parse_attempt(&id, &attempt)?;
    let presented = grant_of(&headers)?;
    let keyring = keyring_of(&app)?;
    let order = admitted(
        &app,
        &keyring,
        job,
        attempt,
        &presented,
        |state, j| match crate::source::source_of(state, j) {
            None => Err(ApiError::not_found(format!(
                "job {} does not run from a repository",
                job.0
            ))),
            Some(Err(reason)) => Err(ApiError::new(StatusCode::CONFLICT, "checkout_failed", reason)),
            Some(Ok(view)) => Ok(view.order),
        },
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(PREPARE_WAIT_MS);
    loop {
        match app.sources.checkout(&order, Some(keyring.as_ref())) {
            CheckoutState::Ready(path) => return serve(&path).await,
            CheckoutState::Failed {
                reason,
                transient: false,
            } => return Err(ApiError::new(StatusCode::CONFLICT, "checkout_failed", reason)),
            CheckoutState::Failed { reason, .. } => {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "checkout_failed", reason).retry_after(5));
            }
            CheckoutState::Preparing if tokio::time::Instant::now() >= deadline => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "preparing",
                    "the source is being checked out on this node",
                )
                .retry_after(2));
            }
            CheckoutState::Preparing => tokio::time::sleep(Duration::from_millis(PREPARE_POLL_MS)).await,
        }
    }
}

#[utoipa::path(get, path = "/v1/jobs/{id}/attempts/{attempt}/inputs/{n}", tag = "jobs",
    params(("id" = u64, Path), ("attempt" = u32, Path), ("n" = u32, Path, description = "which of the artifacts of the jobs it needs, from 0, in the order of its `needs`")),
    security(("grant" = [])),
    responses((status = 200, description = "the artifact: a tar archive compressed with zstd, checked against its digest as it is sent", content_type = "application/zstd"),
        (status = 401, description = "no grant, or not this attempt's", body = super::openapi::ErrorBodyDoc),
        (status = 404, description = "no such attempt, or no such artifact", body = super::openapi::ErrorBodyDoc),
        (status = 410, description = "the attempt is over", body = super::openapi::ErrorBodyDoc),
        (status = 503, description = "no leader to catch up with, or the blob is on no node that answers: try again (Retry-After)", body = super::openapi::ErrorBodyDoc)))]
pub async fn inputs(
    State(app): State<AppState>,
    Path((id, attempt, n)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (job, attempt) = parse_attempt(&id, &attempt)?;
    let n = usize::try_from(parse_id("n", &n)?).map_err(|_| ApiError::bad_request("n", "n: not an artifact number"))?;
    let presented = grant_of(&headers)?;
    let keyring = keyring_of(&app)?;
    let record = admitted(&app, &keyring, job, attempt, &presented, |state, j| {
        state
            .inputs_of(j)
            .nth(n)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("job {} receives no artifact {n}", job.0)))
    })
    .await?;
    super::artifacts::serve_blob(&app, &(&record).into(), None).await
}

#[utoipa::path(get, path = "/v1/jobs/{id}/attempts/{attempt}/cache", tag = "jobs",
    params(("id" = u64, Path), ("attempt" = u32, Path)),
    security(("grant" = [])),
    responses((status = 200, description = "the job's cache: a tar archive compressed with zstd, checked against its digest as it is sent", content_type = "application/zstd"),
        (status = 401, description = "no grant, or not this attempt's", body = super::openapi::ErrorBodyDoc),
        (status = 404, description = "no such attempt, or its tenant keeps no cache of the job's key", body = super::openapi::ErrorBodyDoc),
        (status = 410, description = "the attempt is over", body = super::openapi::ErrorBodyDoc),
        (status = 503, description = "no leader to catch up with, or the blob is on no node that answers: try again (Retry-After)", body = super::openapi::ErrorBodyDoc)))]
pub async fn cache(
    State(app): State<AppState>,
    Path((id, attempt)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (job, attempt) = parse_attempt(&id, &attempt)?;
    let presented = grant_of(&headers)?;
    let keyring = keyring_of(&app)?;
    let record = admitted(&app, &keyring, job, attempt, &presented, |state, j| {
        state
            .cache_for(j)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("job {} has no cache to restore", job.0)))
    })
    .await?;
    super::artifacts::serve_blob(&app, &(&record).into(), None).await
}

pub(super) fn parse_attempt(id: &str, attempt: &str) -> Result<(JobId, u32), ApiError> {
    let job = JobId(parse_id("id", id)?);
    let attempt = u32::try_from(parse_id("attempt", attempt)?)
        .map_err(|_| ApiError::bad_request("attempt", "attempt: not an attempt number"))?;
    Ok((job, attempt))
}

/// The grant presented as `Authorization: Bearer`.
pub(super) fn grant_of(headers: &HeaderMap) -> Result<String, ApiError> {
    Ok(headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?
        .trim()
        .to_string())
}

pub(super) fn keyring_of(app: &AppState) -> Result<std::sync::Arc<crate::secrets::Keyring>, ApiError> {
    app.keyring.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_keys",
            "this node has no --secrets-key-file to check a grant with; another node may",
        )
        .retry_after(1)
    })
}

/// `then` of the state and the job, once `presented` is found to be the grant of `attempt` of
/// `job` and the attempt lives. What this node knows of the attempt first; one it does not
/// know yet may be one it has not applied, so it catches up with the cluster once and then
/// answers for sure.
async fn admitted<T>(
    app: &AppState,
    keyring: &crate::secrets::Keyring,
    job: JobId,
    attempt: u32,
    presented: &str,
    then: impl Fn(&flotilla_state_machine::State, &flotilla_state_machine::Job) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    admitted_by(app, keyring, Scope::Source, (job, attempt), presented, then).await
}

/// `admitted`, for the grant of `scope` (`source::grant::Scope`).
pub(super) async fn admitted_by<T>(
    app: &AppState,
    keyring: &crate::secrets::Keyring,
    scope: Scope,
    (job, attempt): (JobId, u32),
    presented: &str,
    then: impl Fn(&flotilla_state_machine::State, &flotilla_state_machine::Job) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Some(t) = attempt_of(app, keyring, scope, (job, attempt), presented, &then)? {
        return Ok(t);
    }
    app.read_barrier(Some("linearizable")).await?;
    attempt_of(app, keyring, scope, (job, attempt), presented, &then)?
        .ok_or_else(|| ApiError::not_found(format!("job {} has no attempt {attempt}", job.0)))
}

/// `then` of the live `attempt` of `job` if `presented` is its grant, from this node's
/// state; `None` when the state does not hold the attempt (not yet, or never).
fn attempt_of<T>(
    app: &AppState,
    keyring: &crate::secrets::Keyring,
    scope: Scope,
    (job, attempt): (JobId, u32),
    presented: &str,
    then: &impl Fn(&flotilla_state_machine::State, &flotilla_state_machine::Job) -> Result<T, ApiError>,
) -> Result<Option<T>, ApiError> {
    let data = app.machine.read();
    let state = &data.state;
    let Some(j) = state.job(job) else {
        // Settled and archived: its attempts are all over.
        return match super::records::job(state, app.machine.disk(), job)? {
            Some(_) => Err(gone(job, attempt)),
            None => Ok(None),
        };
    };
    let Some(a) = state.assignments_of(job).find(|a| a.attempt == attempt) else {
        return if j.attempt < attempt || (j.attempt == attempt && !j.state.is_terminal()) {
            Ok(None)
        } else {
            Err(gone(job, attempt))
        };
    };
    if !crate::source::grant::opens(keyring, scope, a, presented) {
        return Err(unauthorized());
    }
    if a.releasing {
        return Err(gone(job, attempt));
    }
    then(state, j).map(Some)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "grant_refused",
        "the grant does not open this attempt's files",
    )
}

fn gone(job: JobId, attempt: u32) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "attempt_over",
        format!(
            "attempt {attempt} of job {} is over: its grant opens nothing more",
            job.0
        ),
    )
}

/// The archive at `path`, streamed from disk (it stays readable if pruned meanwhile: the
/// open file outlives its name).
async fn serve(path: &std::path::Path) -> Result<Response, ApiError> {
    let unreadable = |e: std::io::Error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "checkout_unreadable",
            format!("the checkout could not be read: {e}"),
        )
        .retry_after(1)
    };
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let length = file.metadata().await.map_err(unreadable)?.len();
    let mut response =
        axum::body::Body::from_stream(flotilla_providers::source_archive::file_chunks(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
