//! `/v1/limits`: the replicated limits every node checks input against (`Limits`), read by
//! anyone who may read, changed by admins within `Limits::CEILING`. A change is no client
//! request a follower may forward: sent to a follower, it is redirected to the leader.

use super::input_body::InputBody;
use super::{ApiError, AppState, ReadQuery, parse_query, read_response};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Command, Limits};

#[utoipa::path(get, path = "/v1/limits", tag = "limits", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the limits in force, and the ceilings they may be raised to"), super::openapi::StandardErrors))]
pub async fn get(State(app): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    Ok(read_response(
        applied,
        &serde_json::json!({ "limits": data.state.limits(), "ceiling": Limits::CEILING }),
    ))
}

/// Replaces the limits (the whole object, as `GET` answers it under `limits`).
#[utoipa::path(put, path = "/v1/limits", tag = "limits",
    request_body(content = super::openapi::LimitsDoc, content_type = "application/json"),
    responses((status = 200, description = "the limits in force"), (status = 307, description = "sent to a follower: see Location"),
              (status = 422, description = "a limit past its ceiling, or zero", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn update(State(app): State<AppState>, InputBody(limits): InputBody<Limits>) -> Result<Response, ApiError> {
    let command = Command::UpdateLimits { limits: limits.clone() };
    let changed = super::commit_at_leader(&app, "/v1/limits", command).await?;
    Ok(Json(serde_json::json!({ "limits": limits, "changed": changed })).into_response())
}
