//! `/v1/schedules`: a tenant's schedules. Setting one checks its cron expression and records
//! its first due time from the cluster's clock; listing shows each with its next due time and
//! what came of the last.

use super::input_body::InputBody;
use super::pipelines::header;
use super::{ApiError, AppState, ReadQuery, parse_query, read_response};
use crate::auth::TenantScope;
use crate::auth::scope::TENANT_HEADER;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::Command;
use flotilla_state_machine::schedule::{FireOutcome, MissedPolicy, Schedule, ScheduleSpec};
use serde_json::{Value, json};

/// A schedule's settings, as `PUT /v1/schedules/{name}` takes them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    pub repository: String,
    pub branch: String,
    pub cron: String,
    #[serde(default)]
    pub missed: MissedPolicy,
}

fn view(s: &Schedule) -> Value {
    let last = s.last.as_ref().map(|(due_ms, outcome)| {
        let mut v = json!({ "due_ms": due_ms });
        match outcome {
            FireOutcome::Started { pipeline } => {
                v["outcome"] = json!("started");
                v["pipeline"] = json!(pipeline);
            }
            FireOutcome::Skipped { reason } => {
                v["outcome"] = json!("skipped");
                v["reason"] = json!(reason);
            }
            FireOutcome::Failed { reason } => {
                v["outcome"] = json!("failed");
                v["reason"] = json!(reason);
            }
        }
        v
    });
    json!({
        "tenant": s.tenant, "name": s.spec.name, "repository": s.spec.repository,
        "branch": s.spec.branch, "cron": s.spec.cron, "missed": s.spec.missed,
        // `null` once the expression names no time to come.
        "next_due_ms": (s.next_due_ms != crate::source::cron::NEVER_MS).then_some(s.next_due_ms),
        "last": last, "created_at_ms": s.created_at_ms,
    })
}

#[utoipa::path(get, path = "/v1/schedules", tag = "repositories", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the schedules of the caller's tenants, with their next due time and last outcome"), super::openapi::StandardErrors))]
pub async fn list(
    State(app): State<AppState>,
    scope: TenantScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let items: Vec<Value> = data
        .state
        .schedules()
        .filter(|s| scope.admits(&s.tenant))
        .map(view)
        .collect();
    Ok(read_response(
        applied,
        &json!({ "items": items, "applied_index": applied }),
    ))
}

#[utoipa::path(put, path = "/v1/schedules/{name}", tag = "repositories", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    request_body(content = super::openapi::ScheduleDoc, content_type = "application/json"),
    responses((status = 200, description = "set, with its first due time"),
              (status = 404, description = "no such repository", body = super::openapi::ErrorBodyDoc),
              (status = 422, description = "invalid settings or cron expression", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn put(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
    InputBody(req): InputBody<ScheduleRequest>,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    let spec = ScheduleSpec {
        name: name.clone(),
        repository: req.repository,
        branch: req.branch,
        cron: req.cron,
        missed: req.missed,
    };
    let next_due_ms = crate::source::cron::next_after(&spec.cron, app.proposer.now_ms()).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("cron: {:?}: {e}", spec.cron),
        )
        .field("cron")
    })?;
    let command = Command::PutSchedule {
        tenant: tenant.clone(),
        spec,
        next_due_ms,
    };
    let changed = super::done(app.proposer.commit(command).await?)?;
    Ok(Json(json!({ "tenant": tenant, "name": name, "changed": changed, "next_due_ms": next_due_ms })).into_response())
}

#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "repositories", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    responses((status = 200, description = "removed"), (status = 404, description = "no such schedule", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn remove(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::remove_named(&app, &scope, &headers, name, |tenant, name| Command::RemoveSchedule {
        tenant,
        name,
    })
    .await
}
