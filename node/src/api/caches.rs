//! `/v1/caches`: the tenants' caches (`cache.rs`), what they take against each tenant's
//! budget beside the tenant's artifacts, and clearing them (a stale or broken cache is the
//! first thing a user of a CI system wants gone).

use super::pipelines::header;
use super::{ApiError, AppState, ReadQuery, parse_query, read_response};
use crate::auth::TenantScope;
use crate::auth::scope::TENANT_HEADER;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{CacheRecord, Command};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Most caches one list answers (`limit` may ask for fewer).
pub const MAX_CACHES_LISTED: usize = 1000;

fn record(r: &CacheRecord) -> Value {
    json!({
        "tenant": r.tenant,
        "key": r.key,
        "digest": r.digest,
        "size_bytes": r.size_bytes,
        "entries": r.entries,
        "job": r.job,
        "pipeline": r.pipeline,
        "saved_at_ms": r.saved_at_ms,
        "used_at_ms": r.used_at_ms,
    })
}

#[utoipa::path(get, path = "/v1/caches", tag = "artifacts", params(
        ("tenant" = Option<String>, Query, description = "this tenant's only"),
        ("limit" = Option<usize>, Query, description = "most caches listed (at most 1000)"),
        ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the caches of the caller's tenants, least recently used last, and each tenant's storage against its budgets"),
              super::openapi::StandardErrors))]
pub async fn list(
    State(app): State<AppState>,
    scope: TenantScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let limit = q.limit.unwrap_or(MAX_CACHES_LISTED);
    if limit == 0 || limit > MAX_CACHES_LISTED {
        return Err(ApiError::bad_request(
            "limit",
            format!("must be between 1 and {MAX_CACHES_LISTED}"),
        ));
    }
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let state = &data.state;
    let wanted = q.tenant.as_deref();
    let shown = |tenant: &str| scope.admits(tenant) && wanted.is_none_or(|w| w == tenant);
    let caches = state.caches();
    let mut items = Vec::new();
    let mut total = 0usize;
    for r in caches.iter().filter(|r| shown(&r.tenant)) {
        total += 1;
        if items.len() < limit {
            items.push(record(r));
        }
    }
    let tenants: BTreeSet<&str> = caches
        .usage()
        .map(|(t, _)| t)
        .chain(state.artifacts().usage().map(|(t, _)| t))
        .chain(wanted)
        .filter(|t| shown(t))
        .collect();
    let limits = state.limits();
    let usage: Vec<Value> = tenants
        .into_iter()
        .map(|t| {
            json!({
                "tenant": t,
                "cache_bytes": caches.tenant_bytes(t),
                "cache_budget_bytes": limits.max_cache_bytes_per_tenant,
                "artifact_bytes": state.artifacts().tenant_bytes(t),
                "artifact_budget_bytes": limits.max_artifact_bytes_per_tenant,
            })
        })
        .collect();
    Ok(read_response(
        applied,
        &json!({
            "items": items,
            "total": total,
            "truncated": total > limit,
            "usage": usage,
            "applied_index": applied,
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/caches/{key}", tag = "artifacts", params(("key" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    responses((status = 200, description = "cleared"), (status = 404, description = "no such cache", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn clear_one(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(reason) = flotilla_state_machine::cache_key_problem(&key) {
        return Err(ApiError::bad_request("key", format!("the cache key {reason}")));
    }
    super::remove_named(&app, &scope, &headers, key, |tenant, key| Command::ClearCaches {
        tenant,
        key: Some(key),
    })
    .await
}

#[utoipa::path(delete, path = "/v1/caches", tag = "artifacts", params(
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    responses((status = 200, description = "every cache of the tenant cleared"), super::openapi::StandardErrors))]
pub async fn clear_all(
    State(app): State<AppState>,
    scope: TenantScope,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    let changed = super::done(
        app.proposer
            .commit(Command::ClearCaches {
                tenant: tenant.clone(),
                key: None,
            })
            .await?,
    )?;
    Ok(Json(json!({ "tenant": tenant, "cleared": changed })).into_response())
}
