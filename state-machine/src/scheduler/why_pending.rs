//! "Why is this job pending?": the scheduler's reasons for one job, from the replicated state.
//!
//! Users of a CI system spend much of their waiting on this question; the answer must come from
//! the same predicates the scheduler places with, not from a second opinion that drifts. This
//! module asks exactly what `schedule_explained` asks (backoff, needs, a live previous worker,
//! the tenant's quota) and what `Pool::unfit_now` answers for every pool (the plan's re-check in
//! `apply` asks it too), and says which failed. It is pure: the REST route, the CLI and the
//! console all show its result.

use crate::{JobId, JobState, Pool, State, UnfitNow};
use serde::Serialize;

/// Most pools one explanation lists: those that fit come first, then those that do not. A fleet
/// of thousands of pools is summarised by the count left out.
pub const MAX_POOL_VERDICTS: usize = 100;

/// Why `job` is (or is not) waiting, as of the state's applied entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingExplanation {
    pub job: JobId,
    pub state: JobState,
    /// The job is pending, nothing holds it back and a pool fits it now: the next scheduling
    /// round places it, unless jobs ahead of it in the queue take that room first.
    pub ready: bool,
    /// What holds the job back before any pool is asked, in the scheduler's order.
    pub blockers: Vec<Blocker>,
    /// Each pool's verdict: those that fit now first, then the others by name.
    pub pools: Vec<PoolVerdict>,
    /// Pools past `MAX_POOL_VERDICTS` left out of `pools`.
    pub pools_not_shown: usize,
    /// A one-line summary for people.
    pub summary: String,
}

impl PendingExplanation {
    /// The explanation of a job that is not pending (one read from the archive, say).
    pub fn not_pending(job: JobId, state: JobState) -> PendingExplanation {
        PendingExplanation {
            job,
            state,
            ready: false,
            blockers: vec![Blocker::NotPending { state }],
            pools: Vec::new(),
            pools_not_shown: 0,
            summary: summarise(&[Blocker::NotPending { state }], 0, 0, state),
        }
    }
}

/// One reason the scheduler passes the job over before it looks at pools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocker {
    /// The job is not pending: nothing is waiting.
    NotPending { state: JobState },
    /// A failed attempt is retried no earlier than this.
    RetryBackoff { until_ms: u64 },
    /// Jobs it `needs` have not finished in a way that lets it run.
    WaitingForNeeds { jobs: Vec<NeedState> },
    /// The worker of its previous attempt is still being stopped.
    PreviousWorkerLive,
    /// One more job of this size would take the tenant past its quota.
    TenantQuota { tenant: String, detail: String },
    /// The cluster has no pool at all.
    NoPools,
}

/// A job that must finish first, and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NeedState {
    pub job: JobId,
    pub name: String,
    pub state: JobState,
}

/// Whether one pool could take the job now, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolVerdict {
    pub pool: String,
    pub fits_now: bool,
    /// Why it does not fit now; `None` when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Explains `job`; `None` if the state does not hold it (archived or never existed).
pub fn why_pending(state: &State, job: JobId, now_ms: u64) -> Option<PendingExplanation> {
    let j = state.job(job)?;
    let mut blockers = Vec::new();
    if j.state != JobState::Pending {
        blockers.push(Blocker::NotPending { state: j.state });
    } else {
        if j.not_before_ms > now_ms {
            blockers.push(Blocker::RetryBackoff {
                until_ms: j.not_before_ms,
            });
        }
        if !state.needs_satisfied(j) {
            let jobs = j
                .needs
                .iter()
                .filter_map(|n| state.job(*n))
                .filter(|n| !crate::apply::satisfies_dependants(n))
                .map(|n| NeedState {
                    job: n.id,
                    name: n.spec.name.to_string(),
                    state: n.state,
                })
                .collect();
            blockers.push(Blocker::WaitingForNeeds { jobs });
        }
        if state.assignments_of(j.id).next().is_some() {
            blockers.push(Blocker::PreviousWorkerLive);
        }
        if let Some(tenant) = state.tenant(&j.tenant)
            && !tenant.admits(&j.spec.resources)
        {
            let detail = match &tenant.quota {
                Some(q) => format!(
                    "quota {} and {} running jobs; allocated {} to {} running; this job asks {}",
                    q.resources, q.max_running_jobs, tenant.allocated, tenant.running_jobs, j.spec.resources
                ),
                None => String::new(),
            };
            blockers.push(Blocker::TenantQuota {
                tenant: j.tenant.to_string(),
                detail,
            });
        }
    }
    let mut verdicts: Vec<PoolVerdict> = state.pools().map(|p| verdict(p, j)).collect();
    if verdicts.is_empty() {
        blockers.push(Blocker::NoPools);
    }
    // Those that fit first (stable: by name within each group, as the state holds them).
    verdicts.sort_by_key(|v| !v.fits_now);
    let fitting = verdicts.iter().filter(|v| v.fits_now).count();
    let pools_not_shown = verdicts.len().saturating_sub(MAX_POOL_VERDICTS);
    verdicts.truncate(MAX_POOL_VERDICTS);
    let ready = blockers.is_empty() && fitting > 0;
    let summary = summarise(&blockers, fitting, verdicts.len() + pools_not_shown, j.state);
    Some(PendingExplanation {
        job,
        state: j.state,
        ready,
        blockers,
        pools: verdicts,
        pools_not_shown,
        summary,
    })
}

fn verdict(pool: &Pool, job: &crate::Job) -> PoolVerdict {
    let name = pool.name();
    let reason = pool.unfit_now(&job.spec).map(|unfit| match unfit {
        UnfitNow::Never(misfit) => misfit,
        UnfitNow::Draining => format!("pool {name} is draining"),
        UnfitNow::AtWorkerLimit => format!(
            "pool {name} runs its most workers ({} of {})",
            pool.workers, pool.spec.max_workers
        ),
        UnfitNow::NoRoom => format!("pool {name} has {} free < {} asked", pool.free(), job.spec.resources),
    });
    PoolVerdict {
        pool: name.to_string(),
        fits_now: reason.is_none(),
        reason,
    }
}

fn summarise(blockers: &[Blocker], fitting: usize, pools: usize, state: JobState) -> String {
    let Some(first) = blockers.first() else {
        return if fitting > 0 {
            format!(
                "ready: {fitting} of {pools} pools fit it now; the next scheduling round places it unless jobs ahead take the room"
            )
        } else {
            format!("no pool of {pools} fits it now; it waits for room")
        };
    };
    // The summary names the first blocker briefly; `Display` says all of it.
    match first {
        Blocker::NotPending {
            state: JobState::AwaitingApproval,
        } => "not pending: the job waits for someone to approve it (flotilla job approve)".to_string(),
        Blocker::NotPending { .. } => format!("not pending: the job is {state}"),
        Blocker::WaitingForNeeds { jobs } => {
            let names: Vec<&str> = jobs.iter().map(|n| n.name.as_str()).collect();
            format!("waiting for needs: {}", names.join(", "))
        }
        Blocker::TenantQuota { tenant, .. } => format!("tenant {tenant} is at its quota"),
        other => other.to_string(),
    }
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocker::NotPending { state } => write!(f, "the job is {state}"),
            Blocker::RetryBackoff { until_ms } => write!(f, "retry backoff until {until_ms} ms since the epoch"),
            Blocker::WaitingForNeeds { jobs } => {
                let needs: Vec<String> = jobs.iter().map(|n| format!("{} ({})", n.name, n.state)).collect();
                write!(f, "waiting for: {}", needs.join(", "))
            }
            Blocker::PreviousWorkerLive => f.write_str("the previous attempt's worker is still being stopped"),
            Blocker::TenantQuota { tenant, detail } => write!(f, "tenant {tenant} is at its quota: {detail}"),
            Blocker::NoPools => f.write_str("the cluster has no pool"),
        }
    }
}
