//! `/v1/jobs`: list with filters, get, cancel, logs.

use super::{cancelled, parse_id, parse_query, parse_state, read_response, ApiError, AppState, Page, ReadQuery};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Command, Job, JobId, JobState};

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

pub async fn get_one(State(app): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.state.read();
    let job = data.state.job(id).ok_or_else(|| ApiError::not_found(format!("job {id} does not exist")))?;
    Ok(read_response(applied, job))
}

pub async fn cancel(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let job = JobId(parse_id("id", &id)?);
    cancelled(app.proposer.propose(Command::CancelJob { job }).await?)
}

/// The job's committed output as text. Following (`?follow=true`) arrives with live logs.
pub async fn logs(State(app): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.state.read();
    if data.state.job(id).is_none() {
        return Err(ApiError::not_found(format!("job {id} does not exist")));
    }
    let mut resp = data.state.log(id).to_vec().into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(HeaderName::from_static(super::APPLIED_INDEX_HEADER), HeaderValue::from(applied));
    Ok(resp)
}
