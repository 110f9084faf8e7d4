//! The page about where pipelines come from: the repositories of the viewer's tenants (forge,
//! URL, pipeline file, webhook path, and the last deliveries with what came of each), the
//! schedules (cron, branch, next due time, what the last one did) and the notifiers (where,
//! on which states). Read-only: they change through the CLI and the API (`docs/forges.md`).

use super::layout::{self, Page, Section, Viewer, timestamp};
use super::view::{Freshness, MAX_FLEET_ROWS};
use super::work_pages::PartialQuery;
use crate::api::{ApiError, AppState, parse_query};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use flotilla_state_machine::notifier::NotifierSpec;
use flotilla_state_machine::schedule::{FireOutcome, Schedule};
use flotilla_state_machine::{DeliveryOutcome, PipelineId, Repository};
use maud::{Markup, html};

/// What the page shows, read under one lock.
struct SourcesView {
    freshness: Freshness,
    repositories: Vec<Repository>,
    schedules: Vec<Schedule>,
    notifiers: Vec<(String, NotifierSpec)>,
}

pub async fn sources(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: PartialQuery = parse_query(raw)?;
    let scope = viewer.scope();
    let data = {
        let data = app.machine.read();
        let s = &data.state;
        SourcesView {
            freshness: Freshness::of(&app, &data),
            repositories: s
                .repositories()
                .filter(|r| scope.admits(&r.tenant))
                .take(MAX_FLEET_ROWS)
                .cloned()
                .collect(),
            schedules: s
                .schedules()
                .filter(|x| scope.admits(&x.tenant))
                .take(MAX_FLEET_ROWS)
                .cloned()
                .collect(),
            notifiers: s
                .notifiers()
                .filter(|(tenant, _)| scope.admits(tenant))
                .take(MAX_FLEET_ROWS)
                .map(|(tenant, n)| (tenant.to_string(), n.clone()))
                .collect(),
        }
    };
    let live = sources_live(&data);
    let page = Page {
        title: "Repositories".into(),
        section: Section::Sources,
        events: "type=PipelineRequested,PipelineCompleted".into(),
        live: Some("/ui/repos?partial=1".into()),
        freshness: &data.freshness,
        below_live: None,
    };
    Ok(layout::respond(&app, &viewer, page, q.partial == Some(1), live))
}

fn pipeline_link(p: PipelineId) -> Markup {
    html! { a href=(format!("/ui/pipelines/{}", p.0)) { "pipeline " (p.0) } }
}

fn sources_live(data: &SourcesView) -> Markup {
    html! {
        @if data.repositories.is_empty() {
            p.note { "No repository yet: " code { "flotilla repo add NAME URL --forge github --webhook-secret SECRET" } " (docs/forges.md)." }
        }
        @for r in &data.repositories {
            section.repository data-repo=(r.spec.name) aria-labelledby=(format!("repo-{}-{}", r.tenant, r.spec.name)) {
                h2 id=(format!("repo-{}-{}", r.tenant, r.spec.name)) { (r.spec.name) " " span.small { "(" (r.tenant) ")" } }
                dl.facts {
                    dt { "Forge" } dd { (r.spec.forge) }
                    dt { "URL" } dd { code { (r.spec.url) } }
                    dt { "Pipeline file" } dd { code { (r.spec.pipeline_path) } }
                    dt { "Webhook" } dd { code { (crate::api::hooks::webhook_path(&r.tenant, &r.spec.name)) } }
                    dt { "Commit statuses" } dd { @if r.spec.reports_statuses() { "reported" } @else { "not reported" } }
                }
                table.list {
                    caption { "Last deliveries (newest first)" }
                    thead { tr { th scope="col" { "At" } th scope="col" { "Delivery" } th scope="col" { "Event" } th scope="col" { "Outcome" } } }
                    tbody {
                        @for d in r.deliveries.iter().rev() {
                            tr {
                                td { (timestamp(d.at_ms)) }
                                td { code { (d.id) } }
                                td { (d.event) }
                                td {
                                    @match &d.outcome {
                                        DeliveryOutcome::Started { pipeline } => { "started " (pipeline_link(*pipeline)) }
                                        DeliveryOutcome::Ignored { reason } => { span.badge.cancelled { "ignored" } " " (reason) }
                                        DeliveryOutcome::Failed { reason } => { span.badge.failed { "failed" } " " (reason) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        table.list #schedules {
            caption { "Schedules (UTC)" }
            thead { tr { th scope="col" { "Schedule" } th scope="col" { "Repository" } th scope="col" { "Branch" } th scope="col" { "Cron" } th scope="col" { "Next" } th scope="col" { "Last" } } }
            tbody {
                @for s in &data.schedules {
                    tr data-schedule=(s.spec.name) {
                        td { (s.spec.name) " " span.small { "(" (s.tenant) ")" } }
                        td { (s.spec.repository) }
                        td { (s.spec.branch) }
                        td { code { (s.spec.cron) } }
                        td { @if s.next_due_ms == crate::source::cron::NEVER_MS { "never" } @else { (timestamp(s.next_due_ms)) } }
                        td {
                            @match &s.last {
                                None => { "-" }
                                Some((at, FireOutcome::Started { pipeline })) => { (timestamp(*at)) ": " (pipeline_link(*pipeline)) }
                                Some((at, FireOutcome::Skipped { reason })) => { (timestamp(*at)) ": skipped, " (reason) }
                                Some((at, FireOutcome::Failed { reason })) => { (timestamp(*at)) ": " span.badge.failed { "failed" } " " (reason) }
                            }
                        }
                    }
                }
            }
        }
        table.list #notifiers {
            caption { "Notifiers" }
            thead { tr { th scope="col" { "Notifier" } th scope="col" { "Posts to" } th scope="col" { "On" } } }
            tbody {
                @for (tenant, n) in &data.notifiers {
                    tr data-notifier=(n.name) {
                        td { (n.name) " " span.small { "(" (tenant) ")" } }
                        // The origin alone: a receiver's path often is its credential.
                        td { (origin(&n.url)) }
                        td {
                            @if n.on.is_empty() { "every state" }
                            @else { (n.on.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                }
            }
        }
    }
}

/// `scheme://host[:port]` of `url`, never its path or query.
fn origin(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notifiers_path_and_query_are_not_shown() {
        assert_eq!(
            origin("https://hooks.chat.example/services/T000/B000/secretpart?x=1"),
            "https://hooks.chat.example"
        );
        assert_eq!(origin("http://127.0.0.1:9000/hook"), "http://127.0.0.1:9000");
        assert_eq!(origin("not a url"), "-");
    }
}
