//! `/v1/notifiers`: URLs that hear about a tenant's pipelines (`notifier.rs`), each delivery
//! signed with a tenant secret; listed with how many deliveries the cluster still owes.

use super::input_body::InputBody;
use super::pipelines::header;
use super::{ApiError, AppState, ReadQuery, parse_query, read_response};
use crate::auth::TenantScope;
use crate::auth::scope::TENANT_HEADER;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::notifier::NotifierSpec;
use flotilla_state_machine::{Command, PipelineState};
use serde_json::{Value, json};

/// A notifier's settings, as `PUT /v1/notifiers/{name}` takes them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierRequest {
    pub url: String,
    pub secret: String,
    #[serde(default)]
    pub on: Vec<PipelineState>,
}

#[utoipa::path(get, path = "/v1/notifiers", tag = "repositories", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the notifiers of the caller's tenants, and the deliveries owed"), super::openapi::StandardErrors))]
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
        .notifiers()
        .filter(|(tenant, _)| scope.admits(tenant))
        .map(|(tenant, n)| json!({ "tenant": tenant, "name": n.name, "url": n.url, "secret": n.secret, "on": n.on }))
        .collect();
    let owed = data
        .state
        .notifications()
        .due(usize::MAX)
        .filter(|(_, d)| scope.admits(&d.tenant))
        .count();
    Ok(read_response(
        applied,
        &json!({ "items": items, "owed": owed, "applied_index": applied }),
    ))
}

#[utoipa::path(put, path = "/v1/notifiers/{name}", tag = "repositories", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    request_body(content = super::openapi::NotifierDoc, content_type = "application/json"),
    responses((status = 200, description = "set"),
              (status = 422, description = "invalid settings, or no such secret", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn put(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
    InputBody(req): InputBody<NotifierRequest>,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    let command = Command::PutNotifier {
        tenant: tenant.clone(),
        spec: NotifierSpec {
            name: name.clone(),
            url: req.url,
            secret: req.secret,
            on: req.on,
        },
    };
    let changed = super::done(app.proposer.commit(command).await?)?;
    Ok(Json(json!({ "tenant": tenant, "name": name, "changed": changed })).into_response())
}

#[utoipa::path(delete, path = "/v1/notifiers/{name}", tag = "repositories", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    responses((status = 200, description = "removed"), (status = 404, description = "no such notifier", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn remove(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::remove_named(&app, &scope, &headers, name, |tenant, name| Command::RemoveNotifier {
        tenant,
        name,
    })
    .await
}
