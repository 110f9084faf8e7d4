//! The shell every console page shares: navigation, who is signed in, how fresh the data is,
//! and the data attributes the page's script reads (which events to follow, which region to
//! refresh, the other members to resume on, the session's CSRF value).

use super::view::Freshness;
use crate::api::AppState;
use crate::auth::{Caller, TenantScope};
use flotilla_state_machine::Role;
use maud::{DOCTYPE, Markup, html};

/// Who is looking at a page, and what the page may offer them.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// `None` under `--auth none` (everyone may do everything).
    pub caller: Option<Caller>,
    /// The session's CSRF value, for the page's actions (none under `--auth none`).
    pub csrf: Option<String>,
}

impl Viewer {
    pub fn scope(&self) -> TenantScope {
        TenantScope::of(self.caller.as_ref())
    }

    /// Whether the viewer's role is at least `role` (always, under `--auth none`).
    pub fn may(&self, role: Role) -> bool {
        self.caller.as_ref().is_none_or(|c| c.role >= role)
    }
}

/// What a page tells the shell about itself.
pub struct Page<'a> {
    pub title: String,
    /// Which navigation entry is current.
    pub section: Section,
    /// The `/v1/events` query the page follows (`""`: every event the viewer may see).
    pub events: String,
    /// The URL of the page's live region, refreshed when a followed event arrives; `None` for
    /// pages that only append (the event feed).
    pub live: Option<String>,
    pub freshness: &'a Freshness,
    /// What follows the live region and no refresh replaces (a job's streamed output).
    pub below_live: Option<Markup>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Pipelines,
    Cluster,
    Pools,
    Sources,
    Events,
}

/// The members' API origins, for the script to resume the event stream on when this node stops
/// answering (the page's own origin first).
pub fn member_origins(app: &AppState) -> Vec<String> {
    let membership = crate::raft::metrics(&app.raft).membership_config.clone();
    membership
        .membership()
        .nodes()
        .map(|(_, n)| app.founding.api.url(&n.api_addr, ""))
        .collect()
}

/// The `<head>` of every console page: its title, the stylesheet, and `extra` (a script).
pub fn head(title: &str, extra: Markup) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Flotilla" }
            link rel="stylesheet" href="/ui/assets/console.css";
            (extra)
        }
    }
}

/// Percent-encodes all but unreserved characters and `/` (RFC 3986), for paths and query values.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn shell(app: &AppState, viewer: &Viewer, page: &Page, live: Markup) -> Markup {
    let origins = serde_json::to_string(&member_origins(app)).unwrap_or_else(|_| "[]".into());
    let nav = [
        (Section::Pipelines, "/ui/pipelines", "Pipelines"),
        (Section::Cluster, "/ui/cluster", "Cluster"),
        (Section::Pools, "/ui/pools", "Pools & tenants"),
        (Section::Sources, "/ui/repos", "Repositories"),
        (Section::Events, "/ui/events", "Events"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&page.title, html! { script src="/ui/assets/console.js" defer {} }))
            body data-events=(page.events) data-live=[page.live.as_deref()] data-members=(origins)
                data-kinds=(flotilla_state_machine::Event::KINDS.join(","))
                data-csrf=[viewer.csrf.as_deref()] data-node=(app.id) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/pipelines" { "Flotilla" }
                    nav aria-label="Sections" {
                        ul {
                            @for (section, href, label) in nav {
                                li {
                                    @if section == page.section {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.session {
                        @match &viewer.caller {
                            Some(c) => {
                                span { (c.name) " (" (c.role) ")" }
                                form method="post" action="/ui/sign-out" {
                                    input type="hidden" name="csrf" value=[viewer.csrf.as_deref()];
                                    button type="submit" { "Sign out" }
                                }
                            }
                            None => { span.warn title="the node runs with --auth none" { "no sign-in (--auth none)" } }
                        }
                    }
                }
                p.status role="status" aria-live="polite" {
                    span #stream-state { "connecting…" }
                    " · read on node " span #fresh-node { (page.freshness.node) }
                    " at entry " span #fresh-index { (page.freshness.applied_index) }
                    " · " time #fresh-at datetime=(iso(page.freshness.read_at_ms)) data-ms=(page.freshness.read_at_ms) { (utc(page.freshness.read_at_ms)) }
                }
                main #main {
                    h1 { (page.title) }
                    div #live { (live) }
                    @if let Some(below) = &page.below_live { (below) }
                }
            }
        }
    }
}

/// A whole page, or with `partial` its live region alone (what the script swaps in).
pub fn respond(app: &AppState, viewer: &Viewer, page: Page, partial: bool, live: Markup) -> axum::response::Response {
    use axum::response::IntoResponse;
    if partial {
        live_region(&page, live).into_response()
    } else {
        shell(app, viewer, &page, live).into_response()
    }
}

/// A live region as a refresh answers it: its content and, hidden, the freshness of its read,
/// which the script copies into the status line.
fn live_region(page: &Page, live: Markup) -> Markup {
    let f = page.freshness;
    html! {
        span hidden data-fresh-node=(f.node) data-fresh-index=(f.applied_index) data-fresh-ms=(f.read_at_ms) {}
        (live)
    }
}

/// A duration in milliseconds as people read it.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// A time in milliseconds since the epoch, rendered by the script in the viewer's time zone
/// (UTC until it runs).
pub fn timestamp(ms: u64) -> Markup {
    html! { time datetime=(iso(ms)) data-ms=(ms) { (utc(ms)) } }
}

fn utc(ms: u64) -> String {
    date_time(ms, " ", " UTC")
}

/// The form of a `<time datetime>` attribute.
fn iso(ms: u64) -> String {
    date_time(ms, "T", "Z")
}

fn date_time(ms: u64, separator: &str, zone: &str) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}{separator}{:02}:{:02}:{:02}{zone}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms since the epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_read_as_people_write_them() {
        assert_eq!(duration(250), "250 ms");
        assert_eq!(duration(1_500), "1.5 s");
        assert_eq!(duration(125_000), "2m 05s");
        assert_eq!(duration(3_720_000), "1h 02m");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_515_200_000), "2026-12-06 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(iso(1_796_515_200_000), "2026-12-06T00:00:00Z");
    }
}
