//! `ArtifactStored`, `ArtifactsFailed` and `ExpireArtifacts`: the records of the files jobs
//! kept (`artifact.rs`). The leader stores the blob on a majority of the nodes before it
//! proposes the record, and proposes it before the job's exit, so a job that succeeded with
//! artifacts has them by the time any job that needs it is placed.

use super::{EntryContext, Handled};
use crate::artifact::{ArtifactRecord, is_digest};
use crate::{
    AttemptOutcome, Event, FailureReason, FencingToken, JobId, JobState, Rejection, Response, SpecError, State,
};

/// Most jobs one `ExpireArtifacts` may name.
pub const MAX_EXPIRE_ARTIFACTS: usize = 1000;

const UNCHANGED: Handled = Ok(Response::Done { changed: false });

/// What an `ArtifactStored` says of the blob.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stored<'a> {
    pub digest: &'a str,
    pub size_bytes: u64,
    pub entries: u32,
}

/// Refuses a blob name that is not a SHA-256 in lowercase hexadecimal (a path, say).
pub(super) fn check_digest(digest: &str) -> Result<(), Rejection> {
    if is_digest(digest) {
        return Ok(());
    }
    Err(Rejection::Invalid(SpecError::Conflict {
        field: "digest".into(),
        reason: "must be a SHA-256 in lowercase hexadecimal".into(),
    }))
}

impl State {
    /// The attempt fenced by `fencing`, if it is `job`'s current one, still running and not
    /// being stopped: the only attempt whose files may be kept or fail it.
    pub(super) fn running_attempt(&self, job: JobId, fencing: FencingToken) -> Result<Option<u32>, Rejection> {
        let j = self.jobs.get(&job).ok_or(Rejection::UnknownJob(job))?;
        let a = self
            .assignments_of(job)
            .find(|a| a.fencing == fencing)
            .ok_or(Rejection::StaleFencing { job, got: fencing })?;
        let live = a.attempt == j.attempt && !a.releasing && matches!(j.state, JobState::Scheduled | JobState::Running);
        Ok(live.then_some(a.attempt))
    }

    pub(crate) fn artifact_stored(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        stored: Stored<'_>,
    ) -> Handled {
        let Some(attempt) = self.running_attempt(job, fencing)? else {
            return UNCHANGED;
        };
        let j = self.jobs.get(&job).ok_or(Rejection::UnknownJob(job))?;
        let Some(spec) = j.spec.artifacts.as_deref() else {
            return Err(Rejection::Invalid(SpecError::Conflict {
                field: "artifacts".into(),
                reason: format!("job {job} keeps no artifacts"),
            }));
        };
        check_digest(stored.digest)?;
        let earlier = self.artifacts.get(job);
        if earlier.is_some_and(|r| r.attempt == attempt && r.digest == stored.digest) {
            return UNCHANGED;
        }
        let max_job = self.limits.max_artifact_bytes_per_job;
        if stored.size_bytes > max_job {
            return Err(Rejection::ArtifactTooLarge {
                job,
                size_bytes: stored.size_bytes,
                limit: format!("the limit of {max_job} bytes per job"),
            });
        }
        let tenant_bytes = self
            .artifacts
            .tenant_bytes(&j.tenant)
            .saturating_sub(earlier.map_or(0, |r| r.size_bytes));
        let max_tenant = self.limits.max_artifact_bytes_per_tenant;
        if tenant_bytes.saturating_add(stored.size_bytes) > max_tenant {
            return Err(Rejection::ArtifactTooLarge {
                job,
                size_bytes: stored.size_bytes,
                limit: format!(
                    "tenant {:?}'s limit of {max_tenant} bytes ({tenant_bytes} kept already)",
                    j.tenant.as_str()
                ),
            });
        }
        let record = ArtifactRecord {
            job,
            pipeline: j.pipeline,
            tenant: j.tenant.clone(),
            attempt,
            digest: stored.digest.into(),
            size_bytes: stored.size_bytes,
            entries: stored.entries,
            created_at_ms: cx.now_ms,
            expires_at_ms: cx.now_ms.saturating_add(spec.expire_in_ms),
        };
        self.artifacts.insert(record);
        cx.emit(Event::ArtifactStored {
            job,
            attempt,
            size_bytes: stored.size_bytes,
        });
        Ok(Response::Done { changed: true })
    }

    /// The attempt's worker exited but its files could not be kept (a path missing, over a
    /// limit): the job fails with `reason`. Not retried: the same steps would fail the same way.
    pub(crate) fn artifacts_failed(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        reason: &str,
    ) -> Handled {
        let Some(attempt) = self.running_attempt(job, fencing)? else {
            return UNCHANGED;
        };
        // The worker is done with: its capacity comes back, as after any exit.
        self.release_assignment(cx, job, attempt);
        let j = self.jobs.get_mut(&job).ok_or(Rejection::UnknownJob(job))?;
        if let Some(a) = j.current_attempt_mut() {
            a.outcome = Some(Box::new(AttemptOutcome::ArtifactsFailed {
                reason: reason.to_string(),
            }));
            a.finished_at_ms = Some(cx.now_ms);
        }
        self.fail_job(
            cx,
            job,
            FailureReason::Artifacts {
                reason: reason.to_string(),
            },
        );
        Ok(Response::Done { changed: true })
    }

    /// Forgets the artifacts of `jobs` that expired by this entry's time; others are passed
    /// over (the leader chose from a state that may be behind).
    pub(crate) fn expire_artifacts(&mut self, cx: &mut EntryContext, jobs: &[JobId]) -> Handled {
        if jobs.len() > MAX_EXPIRE_ARTIFACTS {
            return Err(Rejection::Invalid(SpecError::TooMany {
                field: "jobs".into(),
                count: jobs.len(),
                max: MAX_EXPIRE_ARTIFACTS,
            }));
        }
        let mut changed = false;
        for &job in jobs {
            if self.artifacts.get(job).is_some_and(|r| r.expires_at_ms <= cx.now_ms) {
                self.drop_artifact(cx, job);
                changed = true;
            }
        }
        Ok(Response::Done { changed })
    }

    /// Forgets `job`'s artifact, if it kept one (expiry, or its pipeline removed).
    pub(crate) fn drop_artifact(&mut self, cx: &mut EntryContext, job: JobId) {
        if let Some(r) = self.artifacts.remove(job) {
            cx.emit(Event::ArtifactRemoved {
                job,
                size_bytes: r.size_bytes,
            });
        }
    }
}
