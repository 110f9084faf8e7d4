//! `/v1/pipelines`: submit (with `Idempotency-Key`), list, get, cancel.

use super::input_body::SourcedBody;
use super::{
    ApiError, AppState, Page, ReadQuery, cancelled, parse_id, parse_query, parse_state, read_response, unexpected,
};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{
    Command, JobId, JobState, Pipeline, PipelineId, PipelineSpec, PipelineState, Response as SmResponse,
};
use serde::Serialize;

use crate::auth::TenantScope;
use crate::auth::scope::TENANT_HEADER;

#[derive(Serialize)]
pub struct JobSummary {
    pub id: JobId,
    pub name: String,
    pub state: JobState,
    pub attempt: u32,
}

#[derive(Serialize)]
pub struct PipelineView {
    #[serde(flatten)]
    pub pipeline: Pipeline,
    pub job_states: Vec<JobSummary>,
}

pub(super) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(name, format!("{name} must be visible ASCII")))
        })
        .transpose()
}

#[utoipa::path(post, path = "/v1/pipelines", tag = "pipelines",
    request_body(description = "the pipeline, as JSON or as the YAML pipeline file",
        content((super::openapi::PipelineSpecDoc = "application/json"), (super::openapi::PipelineSpecDoc = "application/yaml"))),
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first submission"),
           ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; default `default`, or a scoped token's only tenant (one it may act in, else 403)")),
    responses((status = 201, description = "created"), (status = 200, description = "an earlier submission with this key"),
              (status = 422, description = "invalid pipeline", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn submit(
    State(app): State<AppState>,
    scope: TenantScope,
    headers: HeaderMap,
    body: SourcedBody<PipelineSpec>,
) -> Result<Response, ApiError> {
    let SourcedBody { value: spec, yaml } = body;
    // Kept only for a YAML body, whose errors are mapped back to lines (see below).
    let submitted = yaml.as_ref().map(|_| spec.clone());
    let key = header(&headers, "idempotency-key")?.map(str::to_string);
    // Kept when a key is given: a repeat whose pipeline was archived is compared with it.
    let keyed = key.as_ref().map(|k| (k.clone(), spec.clone()));
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    // The request's span continues the caller's trace; its context travels in the proposal.
    let span = tracing::info_span!("api.submit_pipeline", node = app.id);
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(crate::observe::telemetry::from_headers(&headers));
    }
    let proposed = {
        use tracing::Instrument;
        let command = Command::SubmitPipeline {
            tenant,
            idempotency_key: key,
            spec,
            source: None,
            rerun_of: None,
        };
        commit_submission(&app, command, keyed).instrument(span).await?
    };
    match proposed {
        SmResponse::Submitted {
            pipeline,
            jobs,
            duplicate,
        } => Ok(submitted_answer(pipeline, &jobs, duplicate, serde_json::json!({}))),
        SmResponse::Rejected(r) => {
            let mut error: ApiError = r.into();
            // Matrix expansion happens in `apply`; here it only maps the error back to its line
            // (bounded like any expansion, by the default limits).
            let origin = submitted.map(|spec| {
                spec.expand_matrix(&flotilla_state_machine::Limits::DEFAULT)
                    .map(|e| e.origin)
                    .unwrap_or_default()
            });
            if let (Some(source), Some(field), Some(origin)) = (&yaml, error.field_name(), &origin)
                && let Some(line) = super::yaml_lines::line_of(source, field, origin)
            {
                error = error.line(line);
            }
            Err(error)
        }
        other => Err(unexpected(other)),
    }
}

/// The answer to an accepted submission: 201 with the pipeline and its jobs, or 200 for an
/// earlier one its key named; `extra`'s fields (an object) are added to the body.
pub(crate) fn submitted_answer(
    pipeline: PipelineId,
    jobs: &[flotilla_state_machine::JobRef],
    duplicate: bool,
    extra: serde_json::Value,
) -> Response {
    let status = if duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let mut body = serde_json::json!({ "pipeline": pipeline, "jobs": jobs, "duplicate": duplicate });
    if let (serde_json::Value::Object(body), serde_json::Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    (status, Json(body)).into_response()
}

/// Commits a `SubmitPipeline` and completes its answer. A repeat of a submission whose
/// pipeline settled since is refused if the key now comes with another spec, else answered
/// with its jobs, both from the archived records. `keyed`: the key and the spec as sent.
pub(crate) async fn commit_submission(
    app: &AppState,
    command: Command,
    keyed: Option<(String, PipelineSpec)>,
) -> Result<SmResponse, ApiError> {
    let mut proposed = app.proposer.commit(command).await?;
    let archived = super::records::Archived(app.machine.disk());
    match keyed {
        Some((key, spec)) => {
            let limits = app.machine.read().state.limits().clone();
            // `apply` expanded it with the same limits before answering; if they changed since
            // and it no longer expands, it cannot be the same spec.
            let expanded = spec.expand_matrix(&limits).map_or(spec, |e| e.spec);
            flotilla_state_machine::refuse_reused_key(&mut proposed, &archived, &key, &expanded)
        }
        None => flotilla_state_machine::complete_submission(&mut proposed, &archived),
    }
    .map_err(super::records::storage_error)?;
    Ok(proposed)
}

/// A pipeline with its jobs' states, live or archived.
pub fn view(
    state: &flotilla_state_machine::State,
    disk: &flotilla_raft_store::DiskStore,
    p: &Pipeline,
) -> Result<PipelineView, ApiError> {
    let job_states = super::records::jobs_of(state, disk, p)?
        .into_iter()
        .map(|j| JobSummary {
            id: j.id,
            name: j.spec.name.to_string(),
            state: j.state,
            attempt: j.attempt,
        })
        .collect();
    Ok(PipelineView {
        pipeline: p.clone(),
        job_states,
    })
}

/// What a list of pipelines asks for.
#[derive(Clone, Copy)]
pub struct ListFilter<'q> {
    pub state: Option<PipelineState>,
    pub tenant: Option<&'q str>,
    pub after: PipelineId,
    /// Items wanted; one more is read to tell whether another page follows.
    pub page: usize,
}

/// Up to `filter.page + 1` pipelines after `filter.after`, live and archived, that `scope`
/// admits (the list route and the console's list share it).
pub fn page_of(
    s: &flotilla_state_machine::State,
    disk: &flotilla_raft_store::DiskStore,
    scope: &TenantScope,
    filter: &ListFilter,
) -> Result<Vec<PipelineView>, ApiError> {
    let (wanted, after, page) = (filter.state, filter.after, filter.page);
    // Each filter reads from the index that answers it, live and archived: a page costs the
    // page (times the caller's tenants), never a scan of other tenants' pipelines.
    let tenants = scope.tenants_to_list(filter.tenant);
    let live: Vec<&Pipeline> = match (&tenants, wanted) {
        (Some(tenants), _) => s
            .index()
            .tenant_pipelines(tenants, wanted, after, page + 1)
            .into_iter()
            .filter_map(|id| s.pipeline(id))
            .collect(),
        (None, Some(w)) => s
            .index()
            .pipelines_in(w, after)
            .filter_map(|id| s.pipeline(id))
            .take(page + 1)
            .collect(),
        (None, None) => s.pipelines_after(after).take(page + 1).collect(),
    };
    let archived = disk
        .pipelines_page(wanted, tenants.as_deref(), after, page + 1)
        .map_err(super::records::storage_error)?;
    let mut views = Vec::with_capacity(page + 1);
    for p in super::records::merge(live, archived, |p| p.id.0, page + 1) {
        if scope.admits(&p.tenant) {
            views.push(view(s, disk, &p)?);
        }
    }
    Ok(views)
}

#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`"), ("limit" = Option<usize>, Query, description = "1..=1000, default 100"), ("after" = Option<u64>, Query, description = "id cursor from `next_after`"), ("state" = Option<String>, Query, description = "filter by state"), ("tenant" = Option<String>, Query, description = "filter by tenant (within the token's tenants)")),
    responses((status = 200, description = "a page of pipelines"), super::openapi::StandardErrors))]
pub async fn list(
    State(app): State<AppState>,
    scope: TenantScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let page = q.page()?;
    let wanted: Option<PipelineState> = parse_state(q.state.as_deref(), "RUNNING, SUCCEEDED, FAILED, CANCELLED")?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let filter = ListFilter {
        state: wanted,
        tenant: q.tenant()?,
        after: PipelineId(q.after.unwrap_or(0)),
        page,
    };
    let views = page_of(&data.state, app.machine.disk(), &scope, &filter)?;
    Ok(read_response(
        applied,
        &Page::collect(views.into_iter(), page, |v: &PipelineView| v.pipeline.id.0, applied),
    ))
}

#[utoipa::path(get, path = "/v1/pipelines/{id}", tag = "pipelines", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the pipeline and its jobs' states"), super::openapi::UnknownId, super::openapi::RemovedId, super::openapi::StandardErrors))]
pub async fn get_one(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id = PipelineId(parse_id("id", &id)?);
    super::read_one(
        &app,
        raw,
        |s, _| super::retention::pipeline_gone(s, &scope, id),
        |s, disk, applied| {
            let Some(p) = super::records::pipeline(s, disk, id)?.filter(|p| scope.admits(&p.tenant)) else {
                return Ok(None);
            };
            Ok(Some(read_response(applied, &view(s, disk, &p)?)))
        },
    )
    .await
}

/// What `POST /v1/pipelines/{id}/rerun` runs again.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// Only the jobs that did not succeed and what depends on them (default: every job).
    #[serde(default)]
    pub failed_only: bool,
}

#[utoipa::path(post, path = "/v1/pipelines/{id}/rerun", tag = "pipelines", params(("id" = u64, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first re-run")),
    request_body(content = super::openapi::RerunDoc, content_type = "application/json"),
    responses((status = 201, description = "the new pipeline, with `rerun_of`"),
              (status = 409, description = "still running, or nothing failed", body = super::openapi::ErrorBodyDoc),
              super::openapi::UnknownId, super::openapi::RemovedId, super::openapi::StandardErrors))]
pub async fn rerun(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
    headers: HeaderMap,
    super::input_body::InputBody(req): super::input_body::InputBody<RerunRequest>,
) -> Result<Response, ApiError> {
    use flotilla_state_machine::rerun::{RerunScope, rerun_spec};
    let id = PipelineId(parse_id("id", &id)?);
    let key = header(&headers, "idempotency-key")?.map(str::to_string);
    // Read after a barrier: a pipeline that just settled on the leader is settled here.
    app.read_barrier(Some("linearizable")).await?;
    let (tenant, spec, source) = {
        let data = app.machine.read();
        let disk = app.machine.disk();
        let Some(p) = super::records::pipeline(&data.state, disk, id)?.filter(|p| scope.admits(&p.tenant)) else {
            // 410 if retention removed it, else 404.
            return Err(super::retention::pipeline_gone(&data.state, &scope, id));
        };
        let jobs = super::records::jobs_of(&data.state, disk, &p)?;
        let jobs: Vec<&flotilla_state_machine::Job> = jobs.iter().map(|j| j.as_ref()).collect();
        let scope = if req.failed_only {
            RerunScope::Failed
        } else {
            RerunScope::All
        };
        let spec = rerun_spec(&p, &jobs, scope)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not_rerunnable", e.to_string()))?;
        (p.tenant.clone(), spec, p.source.clone().map(Box::new))
    };
    let command = Command::SubmitPipeline {
        tenant,
        idempotency_key: key.clone(),
        spec: spec.clone(),
        source,
        rerun_of: Some(id),
    };
    match commit_submission(&app, command, key.map(|k| (k, spec))).await? {
        SmResponse::Submitted {
            pipeline,
            jobs,
            duplicate,
        } => Ok(submitted_answer(
            pipeline,
            &jobs,
            duplicate,
            serde_json::json!({ "rerun_of": id }),
        )),
        SmResponse::Rejected(r) => Err(r.into()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(post, path = "/v1/pipelines/{id}/cancel", tag = "pipelines", params(("id" = u64, Path)),
    responses((status = 200, description = "the jobs cancelled"), super::openapi::UnknownId, super::openapi::StandardErrors))]
pub async fn cancel(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let pipeline = PipelineId(parse_id("id", &id)?);
    super::admit_scoped(
        &app,
        &scope,
        |s, _| {
            s.pipeline(pipeline)
                .map(|p| p.tenant.as_str())
                .or_else(|| s.archive().tenant_of(pipeline))
                .map(str::to_string)
        },
        || format!("pipeline {pipeline} does not exist"),
    )
    .await?;
    cancelled(app.proposer.commit(Command::CancelPipeline { pipeline }).await?)
}
