//! The pages about the fleet: the cluster (members, roles, Raft indexes and lag), pools and
//! tenants (capacity bars, quotas, queue depth), and the live event feed.

use super::layout::{self, Page, Section, Viewer, timestamp};
use super::view::{self, ClusterOverview, PoolsOverview};
use super::work_pages::PartialQuery;
use crate::api::{ApiError, AppState, parse_query};
use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Resources, Role};
use maud::{Markup, html};

pub async fn cluster(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: PartialQuery = parse_query(raw)?;
    let data = view::cluster(&app).await;
    let live = cluster_live(&data);
    let page = Page {
        title: "Cluster".into(),
        section: Section::Cluster,
        // Membership and leadership are not events; the page refreshes on any change of work
        // and every few seconds (`data-poll-ms` in the live region).
        events: "type=PoolRegistered,PoolRemoved,CapacityUpdated".into(),
        live: Some("/ui/cluster?partial=1".into()),
        freshness: &data.freshness,
        below_live: None,
    };
    Ok(layout::respond(&app, &viewer, page, q.partial == Some(1), live))
}

fn cluster_live(data: &ClusterOverview) -> Markup {
    let c = &data.cluster;
    html! {
        div data-poll-ms="2000" {}
        dl.facts {
            dt { "This node" } dd { (c.id) " (" (c.state) ")" }
            dt { "Leader" } dd #leader { @if let Some(l) = c.leader { (l) } @else { "none" } }
            dt { "Term" } dd #term { (c.term) }
            dt { "Cluster" } dd { (c.cluster_id.as_deref().unwrap_or("not founded")) }
            dt { "Last log index" } dd { (opt(c.last_log_index)) }
            dt { "Committed" } dd { (opt(c.committed_index)) }
            dt { "Applied" } dd { (opt(c.applied_index)) }
            dt { "Snapshot" } dd { (opt(c.snapshot_index)) }
        }
        table.list #members {
            caption { "Members" }
            thead { tr { th scope="col" { "ID" } th scope="col" { "Role" } th scope="col" { "API" } th scope="col" { "Raft" } th scope="col" { "Health" } th scope="col" { "Matched" } th scope="col" { "Behind" } } }
            tbody {
                @for m in &c.members {
                    @let role = if Some(m.id) == c.leader { "leader" } else if m.voter { "voter" } else { "learner" };
                    @let behind = data.lag.iter().find(|(id, _)| *id == m.id).and_then(|(_, b)| *b);
                    tr data-member=(m.id) {
                        td { (m.id) }
                        td { span class=(format!("badge {role}")) { (role) } }
                        td { (m.api_addr) }
                        td { (m.raft_addr) }
                        td {
                            @if let Some(h) = data.health.iter().find(|h| h.id == m.id) {
                                @if h.ready { span.badge.open data-health="ready" { "ready" } }
                                @else { span.badge.failed data-health="not-ready" title=(h.detail) { "not ready" } " " span.small { (h.detail) } }
                            }
                        }
                        td { (opt(m.matched_index)) }
                        td { @if let Some(b) = behind { (b) " entries" } @else { "-" } }
                    }
                }
            }
        }
        @if c.leader != Some(c.id) {
            p.note { "Matched indexes and lag are known to the leader alone." }
        }
        table.list #leader-changes {
            caption { "Leadership, as node " (c.id) " saw it change (newest first)" }
            thead { tr { th scope="col" { "Seen at" } th scope="col" { "Term" } th scope="col" { "Leader" } } }
            tbody {
                @for change in &data.leader_changes {
                    tr {
                        td { (timestamp(change.at_ms)) }
                        td { (change.term) }
                        td { @if let Some(l) = change.leader { (l) } @else { "none (election)" } }
                    }
                }
            }
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub async fn pools(
    State(app): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: PartialQuery = parse_query(raw)?;
    let data = view::pools(&app, &viewer.scope());
    let live = pools_live(&data, &viewer);
    let page = Page {
        title: "Pools & tenants".into(),
        section: Section::Pools,
        events: "type=PoolRegistered,PoolRemoved,CapacityUpdated,QuotaUpdated,AssignmentCreated,JobCompleted,JobFailed,JobCancelled,JobRequested".into(),
        live: Some("/ui/pools?partial=1".into()),
        freshness: &data.freshness,
        below_live: None,
    };
    Ok(layout::respond(&app, &viewer, page, q.partial == Some(1), live))
}

/// A capacity bar: what is allocated of what there is, by CPU (the scheduler's first resource).
fn bar(allocated: &Resources, capacity: &Resources) -> Markup {
    let pct = allocated
        .cpu_millis
        .saturating_mul(100)
        .checked_div(capacity.cpu_millis)
        .unwrap_or(0)
        .min(100);
    html! {
        meter min="0" max="100" value=(pct) title=(format!("{allocated} of {capacity}")) { (pct) "%" }
        " " span.small { (allocated.cpu_millis) " / " (capacity.cpu_millis) " m CPU" }
    }
}

fn pools_live(data: &PoolsOverview, viewer: &Viewer) -> Markup {
    html! {
        p { "All pools: " (bar(&data.allocated, &data.capacity)) }
        table.list #pools {
            caption { "Pools" }
            thead { tr { th scope="col" { "Pool" } th scope="col" { "Provider" } th scope="col" { "CPU in use" } th scope="col" { "Memory" } th scope="col" { "Workers" } th scope="col" { "State" } @if viewer.may(Role::Operator) { th scope="col" { "Action" } } } }
            tbody {
                @for p in &data.pools {
                    tr data-pool=(p.spec.name) {
                        td { (p.spec.name) }
                        td { (p.spec.provider) }
                        td { (bar(&p.allocated, &p.spec.capacity)) }
                        td { (p.allocated.memory_mib) " / " (p.spec.capacity.memory_mib) " MiB" }
                        td { (p.workers) " / " (p.spec.max_workers) }
                        td {
                            @if p.draining { span.badge.draining { "draining" } } @else { span.badge.open { "open" } }
                            @if let Some(problem) = &p.problem { " " span.warn { (problem) } }
                        }
                        @if viewer.may(Role::Operator) {
                            td {
                                button.action type="button" data-action=(format!("/v1/pools/{}/drain", p.spec.name))
                                    data-body=(if p.draining { r#"{"draining":false}"# } else { r#"{"draining":true}"# }) {
                                    @if p.draining { "Undrain" } @else { "Drain" }
                                }
                            }
                        }
                    }
                }
                @if data.pools.is_empty() { tr { td colspan="7" { "No pools." } } }
            }
        }
        @if data.pools_not_shown > 0 { p.note { (data.pools_not_shown) " more pools not listed (" a href="/v1/pools" { "all pools as JSON" } ")." } }
        table.list #tenants {
            caption { "Tenants" }
            thead { tr { th scope="col" { "Tenant" } th scope="col" { "Quota" } th scope="col" { "Allocated" } th scope="col" { "Running" } th scope="col" { "Pending" } } }
            tbody {
                @for t in &data.tenants {
                    tr data-tenant=(t.name) {
                        td { (t.name) }
                        td { @if let Some(q) = &t.quota { (bar(&t.allocated, &q.resources)) " · " (q.max_running_jobs) " jobs" } @else { "none" } }
                        td { (t.allocated) }
                        td { (t.running_jobs) }
                        td { @if t.pending_at_least { "≥ " } (t.pending_jobs) }
                    }
                }
                @if data.tenants.is_empty() { tr { td colspan="5" { "No tenant has work or a quota." } } }
            }
        }
        @if data.tenants_not_shown > 0 { p.note { (data.tenants_not_shown) " more tenants not listed (" a href="/v1/tenants" { "all tenants as JSON" } ")." } }
    }
}

pub async fn events(State(app): State<AppState>, Extension(viewer): Extension<Viewer>) -> Result<Response, ApiError> {
    let freshness = {
        let data = app.machine.read();
        view::Freshness::of(&app, &data)
    };
    let live = html! {
        p { "Events as this cluster applies them, newest first; the feed resumes on another node if this one stops." }
        ol #event-feed reversed aria-live="off" {}
    };
    let page = Page {
        title: "Events".into(),
        section: Section::Events,
        events: String::new(),
        live: None,
        freshness: &freshness,
        below_live: None,
    };
    Ok(layout::shell(&app, &viewer, &page, live).into_response())
}
