//! Pipelines and jobs wherever they are: live in the applied state, or archived on disk once
//! their pipeline settled (`flotilla_state_machine::DiskWrite::Archive`).
//!
//! Every read takes the state's read lock and the store together (`StateHandle::read`, then
//! `StateHandle::disk`): the store is written under the write lock, so the two match. A
//! record can be briefly in both after a snapshot install (the sent store runs ahead of the
//! snapshot's state until the log's replay catches up): the live one wins.

use super::ApiError;
use axum::http::StatusCode;
use flotilla_raft_store::DiskStore;
use flotilla_state_machine::{Event, Job, JobId, Pipeline, PipelineId, State};
use std::borrow::Cow;

/// A read of the store that failed: the node's disk, not the request, is at fault.
pub fn storage_error(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "reading archived records failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage",
        "this node could not read its store; try another node",
    )
    .retry_after(1)
}

pub fn pipeline<'a>(s: &'a State, d: &DiskStore, id: PipelineId) -> Result<Option<Cow<'a, Pipeline>>, ApiError> {
    if let Some(p) = s.pipeline(id) {
        return Ok(Some(Cow::Borrowed(p)));
    }
    if !s.archive().contains(id) {
        return Ok(None);
    }
    Ok(d.pipeline(id).map_err(storage_error)?.map(Cow::Owned))
}

pub fn job<'a>(s: &'a State, d: &DiskStore, id: JobId) -> Result<Option<Cow<'a, Job>>, ApiError> {
    if let Some(j) = s.job(id) {
        return Ok(Some(Cow::Borrowed(j)));
    }
    if !s.job_not_live(id) {
        return Ok(None);
    }
    Ok(d.job(id).map_err(storage_error)?.map(Cow::Owned))
}

/// The jobs of pipeline `p`, in its order: all live, or all archived with it (one range read,
/// `DiskStore::jobs_of`).
pub fn jobs_of<'a>(s: &'a State, d: &DiskStore, p: &Pipeline) -> Result<Vec<Cow<'a, Job>>, ApiError> {
    let Some(first) = p.jobs.first() else {
        return Ok(Vec::new());
    };
    if s.job(*first).is_some() {
        return Ok(p.jobs.iter().filter_map(|id| s.job(*id)).map(Cow::Borrowed).collect());
    }
    let jobs = d.jobs_of(p).map_err(storage_error)?;
    Ok(jobs.into_iter().map(Cow::Owned).collect())
}

/// The tenant of the work `event` is about (see `State::tenant_of`), looking up an archived
/// job's record where the state no longer holds it.
pub fn event_tenant(s: &State, d: &DiskStore, event: &Event) -> Option<String> {
    if let Some(t) = s.tenant_of(event) {
        return Some(t.to_string());
    }
    let job = event.job()?;
    d.job(job).ok().flatten().map(|j| j.tenant.into())
}

/// The pipeline of the work `event` is about.
pub fn event_pipeline(s: &State, d: &DiskStore, event: &Event) -> Option<PipelineId> {
    event.pipeline().or_else(|| {
        let job = event.job()?;
        s.job(job)
            .map(|j| j.pipeline)
            .or_else(|| d.job(job).ok().flatten().map(|j| j.pipeline))
    })
}

/// Records as `DiskStore` reads them, for completing answers `apply` gave without them.
pub struct Archived<'a>(pub &'a DiskStore);

impl flotilla_state_machine::ArchivedRecords for Archived<'_> {
    type Error = std::io::Error;

    fn archived_pipeline(&self, id: PipelineId) -> std::io::Result<Option<Pipeline>> {
        self.0.pipeline(id)
    }

    fn archived_job(&self, id: JobId) -> std::io::Result<Option<Job>> {
        self.0.job(id)
    }

    fn archived_jobs(&self, p: &Pipeline) -> std::io::Result<Vec<Job>> {
        self.0.jobs_of(p)
    }
}

/// Merges a page of live records and a page of archived ones (each in id order, each at most
/// `limit`) into the first `limit` by id; an id in both is the live one.
pub fn merge<'a, T: Clone>(
    live: Vec<&'a T>,
    archived: Vec<T>,
    id: impl Fn(&T) -> u64,
    limit: usize,
) -> Vec<Cow<'a, T>> {
    let mut out: Vec<Cow<'a, T>> = Vec::with_capacity(limit.min(live.len() + archived.len()));
    let (mut a, mut b) = (live.into_iter().peekable(), archived.into_iter().peekable());
    while out.len() < limit {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => a.next().map(Cow::Borrowed),
            (None, Some(_)) => b.next().map(Cow::Owned),
            (Some(x), Some(y)) => {
                let (ix, iy) = (id(x), id(y));
                if iy < ix {
                    b.next().map(Cow::Owned)
                } else {
                    if iy == ix {
                        b.next();
                    }
                    a.next().map(Cow::Borrowed)
                }
            }
        };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn a_merge_is_in_id_order_prefers_the_live_record_and_stops_at_the_limit() {
        let live = [(1u64, "live"), (4, "live"), (6, "live")];
        let archived = vec![(2u64, "disk"), (4, "disk"), (5, "disk"), (9, "disk")];
        let merged = merge(live.iter().collect(), archived.clone(), |x| x.0, 10);
        let got: Vec<(u64, &str)> = merged.iter().map(|c| (c.0, c.1)).collect();
        assert_eq!(
            got,
            vec![
                (1, "live"),
                (2, "disk"),
                (4, "live"),
                (5, "disk"),
                (6, "live"),
                (9, "disk")
            ]
        );
        let merged = merge(live.iter().collect(), archived, |x| x.0, 3);
        assert_eq!(merged.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1, 2, 4]);
    }
}
