//! `GET /v1/events`: Server-Sent Events from this node's own applied state.
//!
//! Each node streams its event journal, so followers serve streams without the leader. The SSE
//! `id` is the event id (`<log_index>-<position>`), the same on every node: a client resumes
//! with `Last-Event-ID` (or `?after=`) on this or any other node and misses nothing and gets
//! nothing twice. A resume point the node no longer holds is refused with `410 Gone` rather
//! than skipped; a reader that falls that far behind while connected gets a final `gap` event.

use super::{ApiError, AppState, parse_id, parse_query};
use crate::auth::TenantScope;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flotilla_raft_store::{JournalCursor, JournaledEvent, StateHandle};
use flotilla_state_machine::{Event, EventId, JobId, PipelineId};
use futures::Stream;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, watch};

/// Events read from the journal per step; the HTTP body's backpressure paces the reads.
const READ_BATCH_EVENTS: usize = 256;
const DEFAULT_HEARTBEAT_MS: u64 = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pipeline: Option<String>,
    job: Option<String>,
    /// Comma-separated event types.
    #[serde(rename = "type")]
    kinds: Option<String>,
    /// Resume after this event id (`Last-Event-ID` wins when both are given); `0` replays all
    /// the node holds. Default: only events applied from now on.
    after: Option<String>,
    /// `false` ends the stream once it has caught up. Default `true`.
    follow: Option<bool>,
    /// Interval of the `: heartbeat` comments, 100..=60000. Default 10000.
    heartbeat_ms: Option<u64>,
}

/// What a stream delivers.
#[derive(Clone, Debug)]
struct Filter {
    pipeline: Option<PipelineId>,
    job: Option<JobId>,
    kinds: Option<BTreeSet<&'static str>>,
    /// The caller's tenants: events of other tenants' pipelines and jobs are left out.
    scope: TenantScope,
    /// Whether the caller may read the token audit trail (an admin, or anyone under
    /// `--auth none`).
    audit: bool,
}

impl Filter {
    fn parse(q: &EventsQuery, scope: TenantScope, audit: bool) -> Result<Filter, ApiError> {
        let kinds = match &q.kinds {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|k| {
                        Event::KINDS
                            .iter()
                            .find(|known| known.eq_ignore_ascii_case(k.trim()))
                            .copied()
                            .ok_or_else(|| {
                                ApiError::bad_request(
                                    "type",
                                    format!("unknown event type {k:?}; known: {}", Event::KINDS.join(", ")),
                                )
                            })
                    })
                    .collect::<Result<BTreeSet<_>, _>>()?,
            ),
        };
        Ok(Filter {
            pipeline: q
                .pipeline
                .as_deref()
                .map(|p| parse_id("pipeline", p).map(PipelineId))
                .transpose()?,
            job: q.job.as_deref().map(|j| parse_id("job", j).map(JobId)).transpose()?,
            kinds,
            scope,
            audit,
        })
    }

    /// Whether `event` passes; a job event's pipeline is looked up in the state.
    fn admits(
        &self,
        event: &Event,
        state: &flotilla_state_machine::State,
        disk: &flotilla_raft_store::DiskStore,
    ) -> bool {
        if self.kinds.as_ref().is_some_and(|k| !k.contains(event.kind())) {
            return false;
        }
        if event.is_audit() && !self.audit {
            return false;
        }
        if let Some(job) = self.job
            && event.job() != Some(job)
        {
            return false;
        }
        if let Some(pipeline) = self.pipeline {
            let of_event = super::records::event_pipeline(state, disk, event);
            if of_event != Some(pipeline) {
                return false;
            }
        }
        if self.scope.is_restricted() && (event.job().is_some() || event.pipeline().is_some()) {
            // An event about work: its tenant is its job's or pipeline's. Events of the cluster
            // and its pools are everyone's.
            if !super::records::event_tenant(state, disk, event).is_some_and(|t| self.scope.admits(&t)) {
                return false;
            }
        }
        true
    }
}

/// The JSON `data` of one SSE event: the event with its id and the term of its entry.
#[derive(Serialize)]
pub struct StreamedEvent<'a> {
    pub id: String,
    pub term: u64,
    #[serde(flatten)]
    pub event: &'a Event,
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(("pipeline" = Option<String>, Query, description = "only this pipeline's events (with its jobs')"),
           ("job" = Option<String>, Query, description = "only this job's events (a tenant-scoped token sees its tenants' pipelines and jobs, and the cluster's and pools' events)"),
           ("type" = Option<String>, Query, description = "comma-separated event types"),
           ("after" = Option<String>, Query, description = "resume after this event id; `0` replays all this node holds"),
           ("follow" = Option<bool>, Query, description = "`false` ends the stream once caught up"),
           ("heartbeat_ms" = Option<u64>, Query, description = "heartbeat comment interval, 100..=60000"),
           ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")),
    responses((status = 200, description = "an SSE stream; `id` is the event id, `event` its type, `data` its JSON", content_type = "text/event-stream"),
              (status = 400, description = "bad parameter", body = super::openapi::ErrorBodyDoc),
              (status = 410, description = "the resume point is older than this node holds", body = super::openapi::ErrorBodyDoc),
              (status = 429, description = "too many streams open", body = super::openapi::ErrorBodyDoc)))]
pub async fn stream(
    State(app): State<AppState>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: EventsQuery = parse_query(raw)?;
    let audit = caller
        .as_deref()
        .is_none_or(|c| c.role == flotilla_state_machine::Role::Admin);
    let filter = Filter::parse(&q, TenantScope::of(caller.as_deref()), audit)?;
    let heartbeat_ms = q.heartbeat_ms.unwrap_or(DEFAULT_HEARTBEAT_MS);
    if !(100..=60_000).contains(&heartbeat_ms) {
        return Err(ApiError::bad_request(
            "heartbeat_ms",
            "heartbeat_ms must be within 100..=60000",
        ));
    }
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(parse_event_id("Last-Event-ID", value.to_str().unwrap_or("\u{fffd}"))?),
        None => q.after.as_deref().map(|a| parse_event_id("after", a)).transpose()?,
    };
    let journal = app.machine.journal().clone();
    let after = match resume {
        Some(id) => {
            if let Err(gap) = journal.read_after(id, 0) {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "events_gone",
                    format!(
                        "{gap}; resume after {} or later, or re-read the state and follow from now",
                        gap.floor
                    ),
                )
                .field(if headers.contains_key("last-event-id") {
                    "Last-Event-ID"
                } else {
                    "after"
                }));
            }
            id
        }
        None => journal.tail(),
    };
    let permit = app.event_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "too many event streams open",
        )
        .retry_after(1)
    })?;
    let reader = Reader {
        cursor: JournalCursor::new(journal, after),
        machine: app.machine.clone(),
        shutdown: app.shutdown.clone(),
        filter,
        follow: q.follow.unwrap_or(true),
        pending: VecDeque::new(),
        done: false,
        _permit: permit,
    };
    let sse = Sse::new(reader.into_stream()).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_millis(heartbeat_ms))
            .text("heartbeat"),
    );
    Ok(sse.into_response())
}

fn parse_event_id(field: &str, raw: &str) -> Result<EventId, ApiError> {
    raw.trim()
        .parse()
        .map_err(|e: flotilla_state_machine::ParseEventIdError| ApiError::bad_request(field, e.to_string()))
}

/// One stream's position in the journal.
struct Reader {
    /// After the last event read from the journal (delivered or filtered out).
    cursor: JournalCursor,
    machine: StateHandle,
    shutdown: watch::Receiver<bool>,
    filter: Filter,
    follow: bool,
    pending: VecDeque<SseEvent>,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl Reader {
    fn into_stream(self) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
        futures::stream::unfold(self, |mut reader| async move {
            reader.next().await.map(|e| (Ok(e), reader))
        })
    }

    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            match self.cursor.next_batch(READ_BATCH_EVENTS) {
                Err(gap) => {
                    self.done = true;
                    let data = serde_json::json!({ "floor": gap.floor.to_string(), "message": gap.to_string() });
                    return Some(SseEvent::default().event("gap").data(data.to_string()));
                }
                Ok(batch) if !batch.is_empty() => self.take(batch),
                Ok(_) if !self.follow => return None,
                Ok(_) => {
                    tokio::select! {
                        more = self.cursor.appended() => if !more { return None },
                        _ = self.shutdown.wait_for(|stop| *stop) => return None,
                    }
                }
            }
        }
    }

    fn take(&mut self, batch: Vec<JournaledEvent>) {
        let data = self.machine.read();
        for item in &batch {
            if self.filter.admits(&item.event, &data.state, self.machine.disk()) {
                let body = StreamedEvent {
                    id: item.id.to_string(),
                    term: item.term,
                    event: &item.event,
                };
                let json = serde_json::to_string(&body).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                self.pending.push_back(
                    SseEvent::default()
                        .id(item.id.to_string())
                        .event(item.event.kind())
                        .data(json),
                );
            }
        }
    }
}
