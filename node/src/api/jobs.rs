//! `/v1/jobs`: list with filters, get, cancel, logs.

use super::{ApiError, AppState, Page, ReadQuery, cancelled, parse_id, parse_query, parse_state, read_response};
use crate::auth::TenantScope;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Command, Job, JobId, JobState, PipelineId};

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`"), ("limit" = Option<usize>, Query, description = "1..=1000, default 100"), ("after" = Option<u64>, Query, description = "id cursor from `next_after`"), ("state" = Option<String>, Query, description = "filter by state"), ("pipeline" = Option<u64>, Query), ("tenant" = Option<String>, Query, description = "filter by tenant (within the token's tenants)")),
    responses((status = 200, description = "a page of jobs"), super::openapi::StandardErrors))]
pub async fn list(
    State(app): State<AppState>,
    scope: TenantScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let page = q.page()?;
    let wanted: Option<JobState> = parse_state(
        q.state.as_deref(),
        "PENDING, SCHEDULED, RUNNING, TERMINATED, SUCCEEDED, FAILED, CANCELLED",
    )?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let disk = app.machine.disk();
    let after = JobId(q.after.unwrap_or(0));
    let s = &data.state;
    // Each filter reads from the index that answers it, live and archived, so a page costs
    // the page (plus, with a pipeline, the pipeline's jobs; with tenants, a page of each),
    // never a scan of every job.
    let tenant = q.tenant()?;
    let tenants = scope.tenants_to_list(tenant);
    let limit = page + 1;
    let found: Vec<std::borrow::Cow<'_, Job>> = match (q.pipeline, &tenants, wanted) {
        (Some(p), _, _) => {
            let mut ids = super::records::pipeline(s, disk, PipelineId(p))?
                .map(|p| p.jobs.clone())
                .unwrap_or_default();
            ids.retain(|id| *id > after);
            ids.sort_unstable();
            let mut jobs = Vec::new();
            for id in ids {
                if jobs.len() >= limit {
                    break;
                }
                if let Some(j) = super::records::job(s, disk, id)?.filter(|j| wanted.is_none_or(|w| j.state == w)) {
                    jobs.push(j);
                }
            }
            jobs
        }
        (None, tenants, _) => {
            let live: Vec<&Job> = match (tenants, wanted) {
                (Some(tenants), _) => s
                    .index()
                    .tenant_jobs(tenants, wanted, after, limit)
                    .into_iter()
                    .filter_map(|id| s.job(id))
                    .collect(),
                (None, Some(w)) => s
                    .index()
                    .jobs_in(w, after)
                    .filter_map(|id| s.job(id))
                    .take(limit)
                    .collect(),
                (None, None) => s.jobs_after(after).take(limit).collect(),
            };
            let archived = disk
                .jobs_page(wanted, tenants.as_deref(), after, limit)
                .map_err(super::records::storage_error)?;
            super::records::merge(live, archived, |j| j.id.0, limit)
        }
    };
    Ok(read_response(
        applied,
        &Page::collect(
            found
                .into_iter()
                .filter(|j| scope.admits(&j.tenant) && tenant.is_none_or(|t| j.tenant == t))
                .map(std::borrow::Cow::into_owned),
            page,
            |j: &Job| j.id.0,
            applied,
        ),
    ))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the job"), super::openapi::UnknownId, super::openapi::RemovedId, super::openapi::StandardErrors))]
pub async fn get_one(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    super::read_one(
        &app,
        raw,
        |s, disk| super::retention::job_gone(s, disk, &scope, id),
        |s, disk, applied| {
            Ok(super::records::job(s, disk, id)?
                .filter(|j| scope.admits(&j.tenant))
                .map(|j| read_response(applied, &*j)))
        },
    )
    .await
}

#[utoipa::path(get, path = "/v1/jobs/{id}/why-pending", tag = "jobs", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "why the job waits: what holds it back in the scheduler's order, and each pool's verdict"), super::openapi::UnknownId, super::openapi::RemovedId, super::openapi::StandardErrors))]
pub async fn why_pending(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    let now_ms = app.proposer.now_ms();
    super::read_one(
        &app,
        raw,
        |s, disk| super::retention::job_gone(s, disk, &scope, id),
        |s, disk, applied| {
            let Some(job) = super::records::job(s, disk, id)?.filter(|j| scope.admits(&j.tenant)) else {
                return Ok(None);
            };
            // A finished job that left the live state is explained as finished.
            let explanation = flotilla_state_machine::scheduler::why_pending(s, id, now_ms)
                .unwrap_or_else(|| flotilla_state_machine::scheduler::PendingExplanation::not_pending(id, job.state));
            Ok(Some(read_response(applied, &explanation)))
        },
    )
    .await
}

/// Answers 404 unless `job` exists (live or archived) in a tenant the caller may act in.
async fn admit_job(app: &AppState, scope: &TenantScope, job: JobId) -> Result<(), ApiError> {
    super::admit_scoped(
        app,
        scope,
        |s, disk| {
            super::records::job(s, disk, job)
                .ok()
                .flatten()
                .map(|j| j.tenant.to_string())
        },
        || format!("job {job} does not exist"),
    )
    .await
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, description = "the jobs cancelled (with dependants)"), super::openapi::UnknownId,
              (status = 409, description = "already finished", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn cancel(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = JobId(parse_id("id", &id)?);
    admit_job(&app, &scope, job).await?;
    let mut answer = app.proposer.commit(Command::CancelJob { job }).await?;
    // A job archived with its settled pipeline is answered from its record.
    flotilla_state_machine::complete_cancel(&mut answer, job, &super::records::Archived(app.machine.disk()))
        .map_err(super::records::storage_error)?;
    cancelled(answer)
}

#[utoipa::path(post, path = "/v1/jobs/{id}/approve", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, description = "approved (or approved already): `{\"approved\": id, \"by\": name}`"),
              (status = 403, description = "the job's `approval_role` asks for more than the caller's role", body = super::openapi::ErrorBodyDoc),
              super::openapi::UnknownId,
              (status = 409, description = "not manual, finished, or a job it needs has not succeeded", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn approve(
    State(app): State<AppState>,
    scope: TenantScope,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = JobId(parse_id("id", &id)?);
    admit_job(&app, &scope, job).await?;
    // Under `--auth none` there is no caller: whoever reaches the port may do anything.
    let (by, role) = match caller.as_deref() {
        Some(c) => (c.name.clone(), c.role),
        None => ("anonymous".to_string(), flotilla_state_machine::Role::Admin),
    };
    let mut answer = app.proposer.commit(Command::ApproveJob { job, by, role }).await?;
    flotilla_state_machine::complete_approval(&mut answer, job, &super::records::Archived(app.machine.disk()))
        .map_err(super::records::storage_error)?;
    match answer {
        flotilla_state_machine::Response::Approved { job, by } => {
            Ok(axum::Json(serde_json::json!({ "approved": job, "by": by })).into_response())
        }
        flotilla_state_machine::Response::Rejected(r) => Err(r.into()),
        other => Err(super::unexpected(other)),
    }
}

/// The job's committed output as text. With `?follow=true` the response stays open and streams
/// output as this node applies it, ending once the job has finished and its worker is gone.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`"),
    ("follow" = Option<bool>, Query, description = "stream until the job has finished"),
    ("offset" = Option<u64>, Query, description = "with `follow`: start after this many bytes (resuming a broken stream)")),
    responses((status = 200, description = "the job's output", content_type = "text/plain"), super::openapi::UnknownId, super::openapi::RemovedId, super::openapi::StandardErrors))]
pub async fn logs(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let id = JobId(parse_id("id", &id)?);
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let body = {
        let data = app.machine.read();
        let disk = app.machine.disk();
        let Some(job) = super::records::job(&data.state, disk, id)?.filter(|j| scope.admits(&j.tenant)) else {
            return Err(super::retention::job_gone(&data.state, disk, &scope, id));
        };
        if let Some(at_ms) =
            super::records::pipeline(&data.state, disk, job.pipeline)?.and_then(|p| p.output_removed_at_ms)
        {
            return Err(super::retention::output_gone(id, at_ms));
        }
        if q.follow == Some(true) {
            // A followed log is an open stream like `/v1/events`: it takes one of the same
            // permits for as long as it is open.
            let permit = app.event_streams.clone().try_acquire_owned().map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "overloaded",
                    "too many streams open",
                )
                .retry_after(1)
            })?;
            let follow = Follow {
                machine: app.machine.clone(),
                job: id,
                sent: q.offset.unwrap_or(0),
                idle_ms: 0,
                shutdown: app.shutdown.clone(),
                _permit: permit,
            };
            axum::body::Body::from_stream(follow_log(follow))
        } else {
            // What the state counts now, read from disk a page at a time.
            axum::body::Body::from_stream(read_log(app.machine.clone(), id, job.log_bytes))
        }
    };
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static(super::APPLIED_INDEX_HEADER),
        HeaderValue::from(applied),
    );
    Ok(resp)
}

/// Most output read from disk in one step of a log stream.
const LOG_PAGE_BYTES: usize = 1024 * 1024;

/// Reads `[from, to)` of `job`'s output, at most a page, on the blocking pool.
async fn read_page(
    machine: &flotilla_raft_store::StateHandle,
    job: JobId,
    from: u64,
    to: u64,
) -> std::io::Result<Vec<u8>> {
    let machine = machine.clone();
    tokio::task::spawn_blocking(move || machine.disk().read(job, from, to, LOG_PAGE_BYTES))
        .await
        .map_err(std::io::Error::other)?
}

/// Streams `job`'s output from the start up to `to` bytes, a page at a time, so a log costs a
/// page of memory whatever its length. Ends early if the output was removed meanwhile.
fn read_log(
    machine: flotilla_raft_store::StateHandle,
    job: JobId,
    to: u64,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
    futures::stream::unfold(0u64, move |sent| {
        let machine = machine.clone();
        async move {
            if sent >= to {
                return None;
            }
            match read_page(&machine, job, sent, to).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = sent + page.len() as u64;
                    Some((Ok(page), next))
                }
                Err(e) => Some((Err(e), to)),
            }
        }
    })
}

/// How often a followed log checks for newly applied output.
const FOLLOW_POLL_MS: u64 = 200;
/// A followed log with no new output for this long ends; the client can follow again.
pub const FOLLOW_IDLE_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// A followed log's progress, and the stream permit it holds while open.
struct Follow {
    machine: flotilla_raft_store::StateHandle,
    job: JobId,
    sent: u64,
    idle_ms: u64,
    shutdown: tokio::sync::watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Streams `job`'s log from the start: what is there, then each newly applied piece (a page at
/// a time, from disk), until the job has finished and holds no worker (so no more output can
/// be committed) and all of it was sent, the stream was idle for `FOLLOW_IDLE_TIMEOUT_MS`, or
/// the node stops.
fn follow_log(follow: Follow) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
    futures::stream::unfold(follow, move |mut f| async move {
        loop {
            let (stored, finished) = {
                let data = f.machine.read();
                // Archived once its pipeline settled: its record says how much it kept.
                let job = super::records::job(&data.state, f.machine.disk(), f.job).ok().flatten();
                let finished = job.as_ref().is_none_or(|j| j.state.is_terminal())
                    && data.state.assignments_of(f.job).next().is_none();
                (job.map_or(0, |j| j.log_bytes), finished)
            };
            let fresh = if stored > f.sent {
                match read_page(&f.machine, f.job, f.sent, stored).await {
                    Ok(page) => page,
                    Err(e) => return Some((Err(e), f)),
                }
            } else {
                Vec::new()
            };
            if !fresh.is_empty() {
                f.sent += fresh.len() as u64;
                f.idle_ms = 0;
                return Some((Ok(fresh), f));
            }
            if finished || f.idle_ms >= FOLLOW_IDLE_TIMEOUT_MS || *f.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(FOLLOW_POLL_MS)) => f.idle_ms += FOLLOW_POLL_MS,
                _ = f.shutdown.changed() => {}
            }
        }
    })
}
