//! The pages about work: the pipelines list, a pipeline with its graph, a job with its steps,
//! its output and why it waits. Each renders one `view` builder's value; `?partial=1` answers
//! the live region alone, which the page's script swaps in when a followed event arrives.

use super::dag::{self, DagJob};
use super::layout::{self, Page, Section, Viewer, duration, timestamp};
use super::view::{self, JobDetail, PipelineDetail, PipelinesPage};
use crate::api::pipelines::ListFilter;
use crate::api::{ApiError, AppState, parse_id, parse_query};
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use flotilla_state_machine::{JobId, JobState, PipelineId, PipelineState, Role};
use maud::{Markup, html};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    tenant: Option<String>,
    /// Part of the name (case-insensitive).
    name: Option<String>,
    after: Option<u64>,
    partial: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialQuery {
    pub partial: Option<u8>,
}

/// Items per page of the pipelines list.
pub const PIPELINES_PER_PAGE: usize = 50;
/// Longest name filter.
pub const MAX_NAME_FILTER_BYTES: usize = 1024;

pub async fn pipelines(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: ListQuery = parse_query(raw)?;
    let state: Option<PipelineState> = crate::api::parse_state(
        q.state.as_deref().filter(|s| !s.is_empty()),
        "RUNNING, SUCCEEDED, FAILED, CANCELLED",
    )?;
    let read = crate::api::ReadQuery {
        tenant: q.tenant.clone().filter(|t| !t.is_empty()),
        ..Default::default()
    };
    let filter = ListFilter {
        state,
        tenant: read.tenant()?,
        after: PipelineId(q.after.unwrap_or(0)),
        page: PIPELINES_PER_PAGE,
    };
    let data = match q.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) if name.len() > MAX_NAME_FILTER_BYTES => {
            return Err(ApiError::bad_request(
                "name",
                format!("name must be at most {MAX_NAME_FILTER_BYTES} bytes"),
            ));
        }
        Some(name) => view::pipelines_named(&app, &viewer.scope(), &filter, name)?,
        None => view::pipelines(&app, &viewer.scope(), &filter)?,
    };
    let live = pipelines_live(&data, &q, &viewer);
    let page = Page {
        title: "Pipelines".into(),
        section: Section::Pipelines,
        events: "type=PipelineRequested,PipelineCompleted,JobCompleted,JobFailed,JobCancelled".into(),
        live: Some(live_url(&q)),
        freshness: &data.freshness,
        below_live: None,
    };
    Ok(layout::respond(&app, &viewer, page, q.partial == Some(1), live))
}

/// The list's URL with `q`'s filters and cursor.
fn list_url(q: &ListQuery) -> String {
    let mut parts = Vec::new();
    if let Some(s) = q.state.as_deref().filter(|s| !s.is_empty()) {
        parts.push(format!("state={}", layout::percent_encode(s)));
    }
    if let Some(t) = q.tenant.as_deref().filter(|t| !t.is_empty()) {
        parts.push(format!("tenant={}", layout::percent_encode(t)));
    }
    if let Some(n) = q.name.as_deref().filter(|n| !n.is_empty()) {
        parts.push(format!("name={}", layout::percent_encode(n)));
    }
    if let Some(a) = q.after {
        parts.push(format!("after={a}"));
    }
    if parts.is_empty() {
        "/ui/pipelines".to_string()
    } else {
        format!("/ui/pipelines?{}", parts.join("&"))
    }
}

/// The URL of the list's live region (what the script refreshes).
fn live_url(q: &ListQuery) -> String {
    let url = list_url(q);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}partial=1")
}

fn state_class(s: impl std::fmt::Display) -> String {
    s.to_string().to_lowercase()
}

fn pipelines_live(data: &PipelinesPage, q: &ListQuery, viewer: &Viewer) -> Markup {
    let states = ["", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
    let chosen = q.state.as_deref().unwrap_or("").to_uppercase();
    html! {
        form.filters method="get" action="/ui/pipelines" {
            label { "State "
                select name="state" {
                    @for s in states {
                        option value=(s) selected[chosen == s] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                }
            }
            label { "Tenant " input name="tenant" value=[q.tenant.as_deref()] size="12" autocomplete="off"; }
            label { "Name " input name="name" type="search" value=[q.name.as_deref()] size="16" autocomplete="off"; }
            button type="submit" { "Filter" }
        }
        @if viewer.may(Role::Submitter) {
            details.submit {
                summary { "Submit a pipeline" }
                form #submit-form data-action="/v1/pipelines" {
                    label for="submit-spec" { "Pipeline file (YAML or JSON)" }
                    textarea #submit-spec name="spec" rows="8" spellcheck="false" required {}
                    button type="submit" { "Submit" }
                    output #submit-result {}
                }
            }
        }
        table.list {
            caption.visually-hidden { "Pipelines, newest last" }
            thead { tr { th scope="col" { "ID" } th scope="col" { "Name" } th scope="col" { "Tenant" } th scope="col" { "State" } th scope="col" { "Jobs" } th scope="col" { "Created" } } }
            tbody {
                @for v in &data.items {
                    @let p = &v.pipeline;
                    tr data-pipeline=(p.id.0) {
                        td { a href=(format!("/ui/pipelines/{}", p.id.0)) { (p.id.0) } }
                        td { a href=(format!("/ui/pipelines/{}", p.id.0)) { (p.name) } }
                        td { (p.tenant) }
                        td { span class=(format!("badge {}", state_class(p.state))) { (p.state) } }
                        td { (job_counts(&v.job_states)) }
                        td { (timestamp(p.created_at_ms)) }
                    }
                }
                @if data.items.is_empty() {
                    tr { td colspan="6" { "No pipelines match." } }
                }
            }
        }
        @if let Some(to) = data.scanned_to {
            p.note { "The name search read " (view::MAX_NAME_SCAN) " pipelines up to " (to) " and stopped; the next page goes on from there." }
        }
        @if let Some(next) = data.next_after {
            @let more = ListQuery { after: Some(next), partial: None, state: q.state.clone(), tenant: q.tenant.clone(), name: q.name.clone() };
            p { a rel="next" href=(list_url(&more)) { "Next page" } }
        }
    }
}

fn job_counts(jobs: &[crate::api::pipelines::JobSummary]) -> String {
    let done = jobs.iter().filter(|j| j.state == JobState::Succeeded).count();
    format!("{done}/{} succeeded", jobs.len())
}

pub async fn pipeline(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: PartialQuery = parse_query(raw)?;
    let id = PipelineId(parse_id("id", &id)?);
    let Some(data) = view::confirmed(&app, || view::pipeline(&app, &viewer.scope(), id)).await? else {
        return Err(ApiError::not_found(format!("no pipeline {id}")));
    };
    let live = pipeline_live(&data, &viewer);
    let page = Page {
        title: format!("Pipeline {} · {}", data.id.0, data.name),
        section: Section::Pipelines,
        events: format!("pipeline={}", data.id.0),
        live: Some(format!("/ui/pipelines/{}?partial=1", data.id.0)),
        freshness: &data.freshness,
        below_live: None,
    };
    Ok(layout::respond(&app, &viewer, page, q.partial == Some(1), live))
}

fn pipeline_live(data: &PipelineDetail, viewer: &Viewer) -> Markup {
    let index: std::collections::BTreeMap<JobId, usize> =
        data.jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
    let dag_jobs: Vec<DagJob> = data
        .jobs
        .iter()
        .map(|j| DagJob {
            id: j.id.0,
            name: j.name.clone(),
            state: state_class(j.state),
            needs: j.needs.iter().filter_map(|n| index.get(n).copied()).collect(),
        })
        .collect();
    html! {
        dl.facts {
            dt { "State" } dd { span #pipeline-state class=(format!("badge {}", state_class(data.state))) { (data.state) } }
            dt { "Tenant" } dd { (data.tenant) }
            @if let Some(src) = &data.source {
                dt { "Source" } dd {
                    (src.repository) " "
                    @if let Some(r) = src.branch().or(src.tag()).or(src.reference.as_deref()) { (r) " " }
                    "at " code title=(src.commit) { (src.commit.get(..12).unwrap_or(&src.commit)) }
                    " (" (src.event.as_str())
                    @if let Some(a) = &src.author { ", by " (a) }
                    ")"
                }
            }
            @if let Some(first) = data.rerun_of {
                dt { "Re-run of" } dd { a href=(format!("/ui/pipelines/{}", first.0)) { (first) } }
            }
            dt { "Created" } dd { (timestamp(data.created_at_ms)) }
            @if let Some(f) = data.finished_at_ms {
                dt { "Finished" } dd { (timestamp(f)) " (" (duration(f.saturating_sub(data.created_at_ms))) ")" }
            }
        }
        @if data.state == PipelineState::Running && viewer.may(Role::Submitter) {
            button.action type="button" data-action=(format!("/v1/pipelines/{}/cancel", data.id.0)) data-confirm="Cancel this pipeline and all its unfinished jobs?" { "Cancel pipeline" }
        }
        @if data.state.is_terminal() && viewer.may(Role::Submitter) {
            button.action type="button" data-action=(format!("/v1/pipelines/{}/rerun", data.id.0)) data-goto-pipeline="1" { "Re-run" }
            @if data.state != PipelineState::Succeeded {
                " "
                button.action type="button" data-action=(format!("/v1/pipelines/{}/rerun", data.id.0)) data-body=r#"{"failed_only":true}"# data-goto-pipeline="1" { "Re-run failed jobs" }
            }
        }
        @if data.jobs.len() <= dag::MAX_DRAWN_JOBS {
            figure.graph { (dag::svg(&dag_jobs)) }
        } @else {
            p { "The graph of " (data.jobs.len()) " jobs is not drawn (more than " (dag::MAX_DRAWN_JOBS) ")." }
        }
        table.list {
            caption.visually-hidden { "Jobs" }
            thead { tr { th scope="col" { "Job" } th scope="col" { "State" } th scope="col" { "Attempt" } th scope="col" { "Pool" } th scope="col" { "Needs" } th scope="col" { "Duration" } } }
            tbody {
                @for j in &data.jobs {
                    tr data-job=(j.id.0) {
                        td { a href=(format!("/ui/jobs/{}", j.id.0)) { (j.name) } }
                        td { span class=(format!("badge {}", state_class(j.state))) data-state=(state_class(j.state)) { (j.state) } }
                        td { (j.attempt) }
                        td { (j.pool.as_deref().unwrap_or("-")) }
                        td { (j.needs.iter().filter_map(|n| index.get(n).map(|i| data.jobs[*i].name.as_str())).collect::<Vec<_>>().join(", ")) }
                        td { @if let Some(d) = j.duration_ms { (duration(d)) } @else { "-" } }
                    }
                }
            }
        }
    }
}

pub async fn job(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: PartialQuery = parse_query(raw)?;
    let id = JobId(parse_id("id", &id)?);
    let Some(data) = view::confirmed(&app, || view::job(&app, &viewer.scope(), id)).await? else {
        return Err(ApiError::not_found(format!("no job {id}")));
    };
    let live = job_live(&data, &viewer);
    let page = Page {
        title: format!("Job {} · {}", data.row.id.0, data.row.name),
        section: Section::Pipelines,
        events: format!(
            "job={}&type=JobRequested,AssignmentCreated,WorkerCreated,JobStarted,StepStarted,StepCompleted,StepFailed,JobCompleted,JobFailed,JobCancelled,JobTerminated,JobRetrying,JobApproved,WorkerFailed,WorkerTerminated",
            data.row.id.0
        ),
        live: Some(format!("/ui/jobs/{}?partial=1", data.row.id.0)),
        freshness: &data.freshness,
        // The output stays outside the live region: a refresh must not reset what was streamed.
        below_live: (q.partial != Some(1)).then(|| output_section(&data)),
    };
    Ok(layout::respond(&app, &viewer, page, q.partial == Some(1), live))
}

fn output_section(data: &JobDetail) -> Markup {
    let id = data.row.id.0;
    html! {
        section.output aria-labelledby="output-title" {
            h2 #output-title { "Output" }
            div.output-tools {
                label { "Search " input #output-search type="search" autocomplete="off"; }
                a href=(format!("/v1/jobs/{id}/logs")) download=(format!("job-{id}.log")) { "Download" }
                span #output-state {}
            }
            @if data.log_truncated {
                p.warn { "The output passed its limit and was truncated." }
            }
            pre #output tabindex="0" data-job=(id) aria-label="the job's output" {}
        }
    }
}

fn job_live(data: &JobDetail, viewer: &Viewer) -> Markup {
    let j = &data.row;
    html! {
        dl.facts {
            dt { "State" } dd { span #job-state class=(format!("badge {}", state_class(j.state))) data-state=(state_class(j.state)) data-terminal=(j.state.is_terminal()) { (j.state) } }
            dt { "Pipeline" } dd { a href=(format!("/ui/pipelines/{}", data.pipeline.0)) { (data.pipeline.0) } }
            dt { "Tenant" } dd { (data.tenant) }
            dt { "Attempt" } dd { (j.attempt) }
            dt { "Pool" } dd { (j.pool.as_deref().unwrap_or("-")) }
            dt { "Duration" } dd { @if let Some(d) = j.duration_ms { (duration(d)) } @else { "-" } }
            @if let Some(f) = &data.failure { dt { "Failure" } dd { (f) } }
            @if let Some(g) = &data.gate { dt { "Gate" } dd #job-gate { (g) } }
        }
        @if let Some(role) = data.approver {
            p #approval { "This job waits for an approval by a " (role) " or above, once the jobs it needs have succeeded." }
            @if viewer.may(role) {
                button.action #approve type="button" data-action=(format!("/v1/jobs/{}/approve", j.id.0)) data-confirm="Approve this job? It runs once placed." { "Approve" }
            }
        }
        @if !j.state.is_terminal() && viewer.may(Role::Submitter) {
            button.action type="button" data-action=(format!("/v1/jobs/{}/cancel", j.id.0)) data-confirm="Cancel this job and the jobs that need it?" { "Cancel job" }
        }
        @if let Some(why) = &data.why_pending {
            section.why #why-pending aria-labelledby="why-title" {
                h2 #why-title { "Why is this job pending?" }
                p #why-summary { (why.summary) }
                @if !why.blockers.is_empty() {
                    ul {
                        @for b in &why.blockers { li { (b) } }
                    }
                }
                @if !why.pools.is_empty() {
                    table.list {
                        caption { "Each pool's verdict" }
                        thead { tr { th scope="col" { "Pool" } th scope="col" { "Fits now" } th scope="col" { "Why not" } } }
                        tbody {
                            @for v in &why.pools {
                                tr { td { (v.pool) } td { @if v.fits_now { "yes" } @else { "no" } } td { (v.reason.as_deref().unwrap_or("")) } }
                            }
                        }
                    }
                    @if why.pools_not_shown > 0 { p { (why.pools_not_shown) " more pools not shown." } }
                }
            }
        }
        section aria-labelledby="steps-title" {
            h2 #steps-title { "Steps" }
            ol.steps {
                @for (i, step) in data.steps.iter().enumerate() {
                    @let n = i as u32;
                    @let status = if data.failed_step == Some(n) { "failed" } else if n < data.steps_completed { "succeeded" } else if data.current_step == Some(n) { "running" } else { "pending" };
                    li class=(status) { code { (step) } span.step-state { (status) } }
                }
            }
        }
        @if let Some(a) = &data.artifact {
            section #artifacts aria-labelledby="artifacts-title" {
                h2 #artifacts-title { "Artifacts" }
                p {
                    "Kept from attempt " (a.attempt) ": " (a.entries) " files and directories, "
                    (a.size_bytes) " bytes compressed, until " (timestamp(a.expires_at_ms)) ". "
                    a href=(format!("/v1/jobs/{}/artifacts/archive", j.id.0)) download=(format!("job-{}-artifacts.tar.zst", j.id.0)) { "Download" }
                    " (a tar archive compressed with zstd; "
                    code { "flotilla job artifacts " (j.id.0) " --extract DIR" }
                    " unpacks it)."
                }
                p.digest { "SHA-256 " code { (a.digest) } }
            }
        }
        @if !data.attempts.is_empty() {
            table.list {
                caption { "Attempts" }
                thead { tr { th scope="col" { "#" } th scope="col" { "Pool" } th scope="col" { "Scheduled" } th scope="col" { "Started" } th scope="col" { "Finished" } th scope="col" { "Outcome" } th scope="col" { "Cache" } } }
                tbody {
                    @for a in &data.attempts {
                        tr {
                            td { (a.attempt) } td { (a.pool) } td { (timestamp(a.scheduled_at_ms)) }
                            td { @if let Some(t) = a.started_at_ms { (timestamp(t)) } @else { "-" } }
                            td { @if let Some(t) = a.finished_at_ms { (timestamp(t)) } @else { "-" } }
                            td { (a.outcome.as_deref().unwrap_or("-")) }
                            td { (a.cache) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls_keep_the_filters_and_encode_them() {
        let q = ListQuery {
            state: Some("FAILED".into()),
            tenant: Some("web team".into()),
            name: None,
            after: Some(50),
            partial: None,
        };
        assert_eq!(list_url(&q), "/ui/pipelines?state=FAILED&tenant=web%20team&after=50");
        assert_eq!(
            live_url(&q),
            "/ui/pipelines?state=FAILED&tenant=web%20team&after=50&partial=1"
        );
        assert_eq!(live_url(&ListQuery::default()), "/ui/pipelines?partial=1");
        assert_eq!(list_url(&ListQuery::default()), "/ui/pipelines");
    }
}
