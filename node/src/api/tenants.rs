//! `/v1/tenants`: each tenant's quota and what it holds, and the admins' quota changes. A
//! quota change is no client request a follower may forward (`Command::is_client_request`):
//! sent to a follower, it is redirected to the leader.

use super::input_body::InputBody;
use super::{ApiError, AppState, ReadQuery, parse_query, read_response};
use crate::auth::TenantScope;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Command, Quota, Resources};

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "tenants with their quota, allocation and running jobs (a scoped token: its own)"), super::openapi::StandardErrors))]
pub async fn list(
    State(app): State<AppState>,
    scope: TenantScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let items: Vec<serde_json::Value> = data
        .state
        .tenants()
        .filter(|(name, _)| scope.admits(name))
        .map(|(name, t)| {
            serde_json::json!({
                "name": name,
                "quota": t.quota,
                "allocated": t.allocated,
                "running_jobs": t.running_jobs,
            })
        })
        .collect();
    Ok(read_response(
        applied,
        &serde_json::json!({ "items": items, "applied_index": applied }),
    ))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    #[serde(default)]
    pub gpus: u32,
    pub max_running_jobs: u32,
    /// The highest priority the tenant's jobs may ask for; none: as high as the limits allow.
    #[serde(default)]
    pub max_priority: Option<i32>,
}

/// Sets a tenant's quota (a lower one lets running jobs finish; new ones wait).
#[utoipa::path(put, path = "/v1/tenants/{name}/quota", tag = "tenants", params(("name" = String, Path)),
    request_body(content = super::openapi::QuotaDoc, content_type = "application/json"),
    responses((status = 200, description = "the quota"), (status = 307, description = "sent to a follower: see Location"),
              (status = 422, description = "invalid tenant name or priority ceiling", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn set_quota(
    State(app): State<AppState>,
    Path(name): Path<String>,
    InputBody(req): InputBody<QuotaRequest>,
) -> Result<Response, ApiError> {
    let quota = Quota {
        resources: Resources {
            cpu_millis: req.cpu_millis,
            memory_mib: req.memory_mib,
            gpus: req.gpus,
        },
        max_running_jobs: req.max_running_jobs,
        max_priority: req.max_priority,
    };
    commit_quota(&app, name, Some(quota)).await
}

/// Lifts a tenant's quota.
#[utoipa::path(delete, path = "/v1/tenants/{name}/quota", tag = "tenants", params(("name" = String, Path)),
    responses((status = 200, description = "no quota"), (status = 307, description = "sent to a follower: see Location"),
              (status = 422, description = "invalid tenant name", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn clear_quota(State(app): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    commit_quota(&app, name, None).await
}

async fn commit_quota(app: &AppState, tenant: String, quota: Option<Quota>) -> Result<Response, ApiError> {
    let command = Command::SetTenantQuota {
        tenant: tenant.clone(),
        quota: quota.clone(),
    };
    let changed = super::commit_at_leader(app, &format!("/v1/tenants/{tenant}/quota"), command).await?;
    Ok(Json(serde_json::json!({ "tenant": tenant, "quota": quota, "changed": changed })).into_response())
}
