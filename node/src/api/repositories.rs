//! `/v1/repos`: a tenant's source repositories. Operators register them (forge, URL, pipeline
//! file, and the names of the tenant secrets holding the webhook secret and fetch token);
//! anyone who may read the tenant lists them with their webhook URL and their last
//! deliveries; submitters run one at a branch, tag or commit by hand.

use super::input_body::InputBody;
use super::pipelines::header;
use super::{ApiError, AppState, ReadQuery, parse_query, read_response};
use crate::auth::TenantScope;
use crate::auth::scope::TENANT_HEADER;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::source::is_object_name;
use flotilla_state_machine::{Command, DeliveryOutcome, Forge, Repository, RepositorySpec, Source, SourceEvent};
use serde_json::{Value, json};

/// A repository's settings, as `PUT /v1/repos/{name}` takes them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryRequest {
    pub url: String,
    pub forge: Forge,
    #[serde(default)]
    pub pipeline_path: Option<String>,
    pub webhook_secret: String,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub status_api: Option<String>,
}

/// What to run by hand: a branch, a tag, a full ref, or a commit (with the ref it is on).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
}

/// A repository as the API shows it: its settings, its webhook's path, its deliveries.
pub fn view(repo: &Repository, with_deliveries: bool) -> Value {
    let deliveries: Vec<Value> = repo
        .deliveries
        .iter()
        .rev()
        .map(|d| {
            let (outcome, detail) = match &d.outcome {
                DeliveryOutcome::Started { pipeline } => ("started", json!({ "pipeline": pipeline })),
                DeliveryOutcome::Ignored { reason } => ("ignored", json!({ "reason": reason })),
                DeliveryOutcome::Failed { reason } => ("failed", json!({ "reason": reason })),
            };
            let mut v = json!({ "id": d.id, "event": d.event, "at_ms": d.at_ms, "outcome": outcome });
            if let (Value::Object(v), Value::Object(detail)) = (&mut v, detail) {
                v.extend(detail);
            }
            v
        })
        .collect();
    let mut v = json!({
        "tenant": repo.tenant,
        "name": repo.spec.name,
        "url": repo.spec.url,
        "forge": repo.spec.forge,
        "pipeline_path": repo.spec.pipeline_path,
        "webhook_secret": repo.spec.webhook_secret,
        "credentials": repo.spec.credentials,
        "status_api": repo.spec.status_api_root(),
        "reports_statuses": repo.spec.reports_statuses(),
        "webhook_path": super::hooks::webhook_path(&repo.tenant, &repo.spec.name),
        "created_at_ms": repo.created_at_ms,
        "updated_at_ms": repo.updated_at_ms,
    });
    if with_deliveries {
        v["deliveries"] = Value::Array(deliveries);
    } else {
        v["last_delivery"] = deliveries.into_iter().next().unwrap_or(Value::Null);
    }
    v
}

#[utoipa::path(get, path = "/v1/repos", tag = "repositories", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the repositories of the caller's tenants, each with its last delivery"), super::openapi::StandardErrors))]
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
        .repositories()
        .filter(|r| scope.admits(&r.tenant))
        .map(|r| view(r, false))
        .collect();
    Ok(read_response(
        applied,
        &json!({ "items": items, "applied_index": applied }),
    ))
}

#[utoipa::path(get, path = "/v1/repos/{name}", tag = "repositories", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    responses((status = 200, description = "the repository with its last deliveries, newest first"),
              (status = 404, description = "no such repository", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn get_one(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let repo = data
        .state
        .repository(&tenant, &name)
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?} has no repository {name:?}")))?;
    Ok(read_response(applied, &view(repo, true)))
}

#[utoipa::path(put, path = "/v1/repos/{name}", tag = "repositories", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    request_body(content = super::openapi::RepositoryDoc, content_type = "application/json"),
    responses((status = 200, description = "registered, or its settings replaced"),
              (status = 404, description = "a named secret does not exist", body = super::openapi::ErrorBodyDoc),
              (status = 422, description = "invalid settings", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn put(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
    InputBody(req): InputBody<RepositoryRequest>,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    let spec = RepositorySpec {
        name: name.clone(),
        url: req.url,
        forge: req.forge,
        pipeline_path: req
            .pipeline_path
            .unwrap_or_else(|| flotilla_state_machine::repository::DEFAULT_PIPELINE_PATH.to_string()),
        webhook_secret: req.webhook_secret,
        credentials: req.credentials,
        status_api: req.status_api,
    };
    let command = Command::PutRepository {
        tenant: tenant.clone(),
        spec,
    };
    let changed = super::done(app.proposer.commit(command).await?)?;
    let body = json!({
        "tenant": tenant, "name": name, "changed": changed,
        "webhook_path": super::hooks::webhook_path(&tenant, &name),
    });
    Ok(Json(body).into_response())
}

#[utoipa::path(delete, path = "/v1/repos/{name}", tag = "repositories", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    responses((status = 200, description = "removed"), (status = 404, description = "no such repository", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn remove(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    super::remove_named(&app, &scope, &headers, name, |tenant, name| Command::RemoveRepository {
        tenant,
        name,
    })
    .await
}

#[utoipa::path(post, path = "/v1/repos/{name}/run", tag = "repositories", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    request_body(content = super::openapi::RunDoc, content_type = "application/json"),
    responses((status = 201, description = "a pipeline was started"),
              (status = 404, description = "no such repository, branch or tag", body = super::openapi::ErrorBodyDoc),
              (status = 422, description = "no pipeline file or an invalid one", body = super::openapi::ErrorBodyDoc),
              (status = 502, description = "the repository could not be fetched", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn run(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
    InputBody(req): InputBody<RunRequest>,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    // The repository as the cluster has it now, not as this node last applied it: a run asked
    // of any node right after the repository was registered or changed sees the change.
    app.read_barrier(Some("linearizable")).await?;
    let repo = app
        .machine
        .read()
        .state
        .repository(&tenant, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?} has no repository {name:?}")))?;
    let reference = match (&req.branch, &req.tag) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("tag", "give a branch or a tag, not both")),
        (Some(b), None) => Some(format!("refs/heads/{b}")),
        (None, Some(t)) => Some(format!("refs/tags/{t}")),
        (None, None) => None,
    };
    if let Some(r) = &reference
        && (r.len() > 256 || r.chars().any(|c| c.is_control() || c == ' ' || c == ':') || r.contains(".."))
    {
        return Err(ApiError::bad_request("branch", format!("{r:?} is not a ref name")));
    }
    let commit = match (&req.commit, &reference) {
        (Some(c), _) if is_object_name(c) => c.clone(),
        (Some(_), _) => {
            return Err(ApiError::bad_request(
                "commit",
                "must be a full commit id: 40 or 64 lowercase hexadecimal digits",
            ));
        }
        (None, None) => return Err(ApiError::bad_request("branch", "give a branch, a tag or a commit")),
        (None, Some(r)) => resolve(&app, &repo, r).await?,
    };
    let source = Source {
        repository: name,
        commit,
        reference: reference.clone(),
        event: SourceEvent::Manual,
        author: None,
        pull_request: None,
        delivery: None,
    };
    let spec = super::hooks::read_pipeline(&app, &repo, &source).await?;
    super::hooks::submit(&app, &repo, spec, source, None).await
}

/// The commit `reference` of `repo` points at now.
async fn resolve(app: &AppState, repo: &Repository, reference: &str) -> Result<String, ApiError> {
    let token = super::hooks::fetch_token(app, repo)?;
    app.sources
        .resolve(repo, token, reference)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "fetch_failed",
                format!("asking {}: {e}", repo.spec.url),
            )
        })?
        .ok_or_else(|| ApiError::not_found(format!("{} has no {reference}", repo.spec.url)).field("branch"))
}
