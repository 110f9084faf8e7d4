//! `/v1/jobs`: list with filters, get, cancel, logs.

use super::{cancelled, parse_id, parse_query, parse_state, read_response, ApiError, AppState, Page, ReadQuery};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Command, Job, JobId, JobState};

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`"), ("limit" = Option<usize>, Query, description = "1..=1000, default 100"), ("after" = Option<u64>, Query, description = "id cursor from `next_after`"), ("state" = Option<String>, Query, description = "filter by state"), ("pipeline" = Option<u64>, Query)),
    responses((status = 200, description = "a page of jobs"), (status = 400, description = "bad parameter", body = super::openapi::ErrorBodyDoc), (status = 503, description = "no leader or not ready", body = super::openapi::ErrorBodyDoc)))]
pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let page = q.page()?;
    let wanted: Option<JobState> =
        parse_state(q.state.as_deref(), "PENDING, SCHEDULED, RUNNING, TERMINATED, SUCCEEDED, FAILED, CANCELLED")?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.state.read();
    let after = q.after.unwrap_or(0);
    let items = data
        .state
        .jobs()
        .filter(|j| j.id.0 > after && wanted.is_none_or(|w| j.state == w) && q.pipeline.is_none_or(|p| j.pipeline.0 == p))
        .cloned();
    Ok(read_response(applied, &Page::collect(items, page, |j: &Job| j.id.0, applied)))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the job"), (status = 404, description = "unknown id", body = super::openapi::ErrorBodyDoc), (status = 400, description = "bad parameter", body = super::openapi::ErrorBodyDoc), (status = 503, description = "no leader or not ready", body = super::openapi::ErrorBodyDoc)))]
pub async fn get_one(State(app): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.state.read();
    let job = data.state.job(id).ok_or_else(|| ApiError::not_found(format!("job {id} does not exist")))?;
    Ok(read_response(applied, job))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, description = "the jobs cancelled (with dependants)"), (status = 404, description = "unknown id", body = super::openapi::ErrorBodyDoc),
              (status = 409, description = "already finished", body = super::openapi::ErrorBodyDoc), (status = 400, description = "bad parameter", body = super::openapi::ErrorBodyDoc), (status = 503, description = "no leader or not ready", body = super::openapi::ErrorBodyDoc)))]
pub async fn cancel(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let job = JobId(parse_id("id", &id)?);
    cancelled(app.proposer.propose(Command::CancelJob { job }).await?)
}

/// The job's committed output as text. With `?follow=true` the response stays open and streams
/// output as this node applies it, ending once the job has finished and its worker is gone.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`"),
    ("follow" = Option<bool>, Query, description = "stream until the job has finished")),
    responses((status = 200, description = "the job's output", content_type = "text/plain"), (status = 404, description = "unknown id", body = super::openapi::ErrorBodyDoc), (status = 400, description = "bad parameter", body = super::openapi::ErrorBodyDoc), (status = 503, description = "no leader or not ready", body = super::openapi::ErrorBodyDoc)))]
pub async fn logs(State(app): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let body = {
        let data = app.state.read();
        if data.state.job(id).is_none() {
            return Err(ApiError::not_found(format!("job {id} does not exist")));
        }
        if q.follow == Some(true) {
            axum::body::Body::from_stream(follow_log(app.state.clone(), id))
        } else {
            axum::body::Body::from(data.state.log(id).to_vec())
        }
    };
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(HeaderName::from_static(super::APPLIED_INDEX_HEADER), HeaderValue::from(applied));
    Ok(resp)
}

/// How often a followed log checks for newly applied output.
const FOLLOW_POLL_MS: u64 = 200;

/// Streams `job`'s log from the start: what is there, then each newly applied piece, until the
/// job has finished and holds no worker (so no more output can be committed).
fn follow_log(state: flotilla_raft_store::StateHandle, job: JobId) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
    futures::stream::unfold((state, 0usize), move |(state, sent)| async move {
        loop {
            let (fresh, finished) = {
                let data = state.read();
                let log = data.state.log(job);
                let finished = data.state.job(job).is_none_or(|j| j.state.is_terminal()) && data.state.assignments_of(job).next().is_none();
                (log.get(sent..).map(<[u8]>::to_vec).unwrap_or_default(), finished)
            };
            if !fresh.is_empty() {
                let next = sent + fresh.len();
                return Some((Ok(fresh), (state, next)));
            }
            if finished {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(FOLLOW_POLL_MS)).await;
        }
    })
}
