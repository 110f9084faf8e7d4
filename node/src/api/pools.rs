//! `/v1/pools`: register a worker pool, list pools with their allocation.

use super::input_body::InputBody;
use super::{ApiError, AppState, ReadQuery, commit_at_leader, done, parse_query, read_response};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Command, PoolSpec};

#[utoipa::path(post, path = "/v1/pools", tag = "pools", request_body(content = super::openapi::PoolSpecDoc, content_type = "application/json"),
    responses((status = 201, description = "registered"), (status = 200, description = "already registered with this spec"),
              (status = 409, description = "exists with another spec", body = super::openapi::ErrorBodyDoc), (status = 422, description = "invalid pool", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn register(State(app): State<AppState>, InputBody(spec): InputBody<PoolSpec>) -> Result<Response, ApiError> {
    let name = spec.name.clone();
    // Accepted either way (another node, the leader perhaps, may have the provider), but the
    // operator hears at once that this one does not; `GET /v1/pools` then shows whether the
    // leader can drive the pool (`problem`).
    let mut warnings = Vec::new();
    if app.providers.get(spec.provider).is_none() {
        warnings.push(format!(
            "node {} has no {} provider; the pool's jobs run only while the leader has one (GET /v1/pools shows a pool the leader cannot drive)",
            app.id, spec.provider
        ));
    }
    let changed = done(app.proposer.commit(Command::RegisterPool { spec }).await?)?;
    let status = if changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(serde_json::json!({ "pool": name, "created": changed, "warnings": warnings })),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/pools", tag = "pools", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "pools with their allocation"), super::openapi::StandardErrors))]
pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let pools: Vec<_> = data.state.pools().cloned().collect();
    Ok(read_response(
        applied,
        &serde_json::json!({ "items": pools, "applied_index": applied }),
    ))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// `true` (the default): place nothing more on the pool; `false`: place again.
    #[serde(default = "yes")]
    pub draining: bool,
}

fn yes() -> bool {
    true
}

/// Stops placing jobs on a pool (its running jobs finish), or starts again. The leader
/// commits it: sent to a follower, the answer is a redirect.
#[utoipa::path(post, path = "/v1/pools/{name}/drain", tag = "pools", params(("name" = String, Path)),
    request_body(content = super::openapi::DrainDoc, content_type = "application/json"),
    responses((status = 200, description = "the pool's draining flag"), (status = 307, description = "sent to a follower: see Location"),
              (status = 404, description = "no such pool", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn drain(
    State(app): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    InputBody(req): InputBody<DrainRequest>,
) -> Result<Response, ApiError> {
    let command = Command::SetPoolDraining {
        pool: name.clone(),
        draining: req.draining,
    };
    let changed = commit_at_leader(&app, &format!("/v1/pools/{name}/drain"), command).await?;
    Ok(Json(serde_json::json!({ "pool": name, "draining": req.draining, "changed": changed })).into_response())
}

/// Removes a pool that runs no worker (drain it first and let its jobs finish). The leader
/// commits it: sent to a follower, the answer is a redirect.
#[utoipa::path(delete, path = "/v1/pools/{name}", tag = "pools", params(("name" = String, Path)),
    responses((status = 200, description = "removed"), (status = 307, description = "sent to a follower: see Location"),
              (status = 404, description = "no such pool", body = super::openapi::ErrorBodyDoc),
              (status = 409, description = "the pool still runs workers", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn remove(
    State(app): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let command = Command::RemovePool { pool: name.clone() };
    commit_at_leader(&app, &format!("/v1/pools/{name}"), command).await?;
    Ok(Json(serde_json::json!({ "removed": name })).into_response())
}
