//! `/ui/api/...`: the console's backend-for-frontend. Each route answers, in one request, all
//! a page needs (a pipeline with its jobs, their edges, durations and attempts; the cluster with
//! its members' lag; pools and tenants with their queue depth), as JSON, from the same `view`
//! builders the pages render. Scripts and other tools may read it; it changes nothing.

use super::layout::Viewer;
use super::view;
use crate::api::pipelines::ListFilter;
use crate::api::{ApiError, AppState, parse_id, parse_query};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use flotilla_state_machine::{JobId, PipelineId, PipelineState};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelinesQuery {
    state: Option<String>,
    tenant: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

pub async fn pipelines(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: PipelinesQuery = parse_query(raw)?;
    let state: Option<PipelineState> =
        crate::api::parse_state(q.state.as_deref(), "RUNNING, SUCCEEDED, FAILED, CANCELLED")?;
    let read = crate::api::ReadQuery {
        tenant: q.tenant,
        limit: q.limit,
        ..Default::default()
    };
    let filter = ListFilter {
        state,
        tenant: read.tenant()?,
        after: PipelineId(q.after.unwrap_or(0)),
        page: read.page()?,
    };
    Ok(Json(view::pipelines(&app, &viewer.scope(), &filter)?).into_response())
}

pub async fn pipeline(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = PipelineId(parse_id("id", &id)?);
    match view::confirmed(&app, || view::pipeline(&app, &viewer.scope(), id)).await? {
        Some(p) => Ok(Json(p).into_response()),
        None => Err(ApiError::not_found(format!("no pipeline {id}"))),
    }
}

pub async fn job(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    match view::confirmed(&app, || view::job(&app, &viewer.scope(), id)).await? {
        Some(j) => Ok(Json(j).into_response()),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

pub async fn cluster(State(app): State<AppState>) -> Response {
    Json(view::cluster(&app).await).into_response()
}

pub async fn pools(State(app): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    Json(view::pools(&app, &viewer.scope())).into_response()
}
