//! `/v1/retention` and `/v1/tenants/{name}/retention`: the retention policies, what they
//! removed and when, and the admins' changes to them; and the 410 answers for what retention
//! removed. A change is no client request a follower may forward: sent to a follower, it is
//! redirected to the leader.

use super::input_body::InputBody;
use super::{ApiError, AppState, ReadQuery, parse_query, read_response};
use crate::auth::TenantScope;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::retention::RetentionPolicy;
use flotilla_state_machine::{Command, JobId, PipelineId};

/// The latest removals a `GET` lists by default, newest first (`?limit=` up to the record's
/// bound, `retention::MAX_REMOVAL_RECORDS`).
const DEFAULT_REMOVALS_LISTED: usize = 100;

#[utoipa::path(get, path = "/v1/retention", tag = "retention",
    params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`"),
           ("limit" = Option<usize>, Query, description = "latest removals to list, newest first (default 100, at most 10000)")),
    responses((status = 200, description = "the default policy, the tenants' policies, totals removed and the latest removals (a scoped token: its tenants' only, without totals)"), super::openapi::StandardErrors))]
pub async fn get(
    State(app): State<AppState>,
    scope: TenantScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let limit = match q.limit {
        None => DEFAULT_REMOVALS_LISTED,
        Some(n) if (1..=flotilla_state_machine::retention::MAX_REMOVAL_RECORDS).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::bad_request(
                "limit",
                format!(
                    "limit must be 1..={}",
                    flotilla_state_machine::retention::MAX_REMOVAL_RECORDS
                ),
            ));
        }
    };
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let retention = data.state.retention();
    let tenants: Vec<serde_json::Value> = retention
        .tenant_policies()
        .filter(|(t, _)| scope.admits(t))
        .map(|(t, p)| serde_json::json!({ "tenant": t, "policy": p }))
        .collect();
    let removals: Vec<_> = retention
        .removals()
        .rev()
        .filter(|r| scope.admits(&r.tenant))
        .take(limit)
        .collect();
    let mut body = serde_json::json!({
        "default": retention.default_policy(),
        "tenants": tenants,
        "removals": removals,
        "applied_index": applied,
    });
    // Totals count every tenant's removals: for callers who may see every tenant.
    if !scope.is_restricted() {
        body["totals"] = serde_json::to_value(retention.totals()).unwrap_or_default();
    }
    Ok(read_response(applied, &body))
}

/// Sets the policy of every tenant without one of its own.
#[utoipa::path(put, path = "/v1/retention/default", tag = "retention",
    request_body(content = super::openapi::RetentionPolicyDoc, content_type = "application/json"),
    responses((status = 200, description = "the policy"), (status = 307, description = "sent to a follower: see Location"),
              (status = 422, description = "an empty policy or an age past 100 years", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn set_default(
    State(app): State<AppState>,
    InputBody(policy): InputBody<RetentionPolicy>,
) -> Result<Response, ApiError> {
    commit(&app, "/v1/retention/default", None, Some(policy)).await
}

/// Lifts the default policy: tenants without their own keep everything.
#[utoipa::path(delete, path = "/v1/retention/default", tag = "retention",
    responses((status = 200, description = "no default policy"), (status = 307, description = "sent to a follower: see Location"), super::openapi::StandardErrors))]
pub async fn clear_default(State(app): State<AppState>) -> Result<Response, ApiError> {
    commit(&app, "/v1/retention/default", None, None).await
}

/// Sets a tenant's own policy (over the default).
#[utoipa::path(put, path = "/v1/tenants/{name}/retention", tag = "retention", params(("name" = String, Path)),
    request_body(content = super::openapi::RetentionPolicyDoc, content_type = "application/json"),
    responses((status = 200, description = "the policy"), (status = 307, description = "sent to a follower: see Location"),
              (status = 422, description = "invalid tenant name, an empty policy or an age past 100 years", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn set_tenant(
    State(app): State<AppState>,
    Path(name): Path<String>,
    InputBody(policy): InputBody<RetentionPolicy>,
) -> Result<Response, ApiError> {
    let path = format!("/v1/tenants/{name}/retention");
    commit(&app, &path, Some(name), Some(policy)).await
}

/// Lifts a tenant's own policy: the default applies to it again.
#[utoipa::path(delete, path = "/v1/tenants/{name}/retention", tag = "retention", params(("name" = String, Path)),
    responses((status = 200, description = "no policy of its own"), (status = 307, description = "sent to a follower: see Location"),
              (status = 422, description = "invalid tenant name", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn clear_tenant(State(app): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let path = format!("/v1/tenants/{name}/retention");
    commit(&app, &path, Some(name), None).await
}

async fn commit(
    app: &AppState,
    path: &str,
    tenant: Option<String>,
    policy: Option<RetentionPolicy>,
) -> Result<Response, ApiError> {
    let command = Command::SetRetention {
        tenant: tenant.clone(),
        policy: policy.clone(),
    };
    let changed = super::commit_at_leader(app, path, command).await?;
    Ok(Json(serde_json::json!({ "tenant": tenant, "policy": policy, "changed": changed })).into_response())
}

/// What a read of an id that retention removed answers: 410, with when if the removal is
/// among the latest recorded. A scoped caller learns of it only for its own tenants' (a job's
/// tenant is gone with it, so a scoped caller gets 404 for a removed job).
pub fn pipeline_gone(state: &flotilla_state_machine::State, scope: &TenantScope, id: PipelineId) -> ApiError {
    let record = state.retention().removal_of(id);
    let visible = match record {
        Some(r) => scope.admits(&r.tenant),
        None => !scope.is_restricted(),
    };
    if !(visible && state.pipeline_removed(id)) {
        return ApiError::not_found(format!("pipeline {id} does not exist"));
    }
    let when = record.map_or(String::new(), |r| format!(" at {} ms", r.removed_at_ms));
    gone(format!("pipeline {id} was removed by the retention policy{when}"))
}

pub fn job_gone(
    state: &flotilla_state_machine::State,
    disk: &flotilla_raft_store::DiskStore,
    scope: &TenantScope,
    id: JobId,
) -> ApiError {
    // Not live and not archived: removed with its pipeline.
    let removed = state.job_not_live(id) && matches!(disk.job(id), Ok(None));
    if scope.is_restricted() || !removed {
        return ApiError::not_found(format!("job {id} does not exist"));
    }
    gone(format!(
        "job {id} was removed with its pipeline by the retention policy"
    ))
}

/// A job whose output retention removed (the job itself remains).
pub fn output_gone(job: JobId, removed_at_ms: u64) -> ApiError {
    gone(format!(
        "the output of job {job} was removed by the retention policy at {removed_at_ms} ms"
    ))
}

fn gone(message: String) -> ApiError {
    ApiError::new(StatusCode::GONE, "gone", message)
}
