//! The scheduler: a pure function from a view of the state to a plan of placements.
//!
//! It only decides; it changes nothing. The leader proposes its plan as `Command::ApplyPlan`,
//! and `apply` re-checks every placement, so a plan computed from a stale view is safe.
//!
//! Order: priority (higher first); within a priority, tenants take turns by fair share (the
//! tenant using the smallest dominant share of the cluster goes next), FIFO within a tenant.
//! Placement: bin-packing (tightest fit) or spread (most room); jobs without GPUs avoid GPU
//! pools when another pool fits.

mod policy;
mod pool_index;
mod score;
mod tenant_turns;
mod why_pending;

pub use policy::{SchedulerPolicy, Strategy};
pub use why_pending::{Blocker, MAX_POOL_VERDICTS, NeedState, PendingExplanation, PoolVerdict, why_pending};

use crate::{Job, JobState, Placement, Resources, State};
use pool_index::PoolIndex;
use tenant_turns::TenantTurns;

/// The placements the scheduler proposes, in the order they were chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<Placement>,
}

/// A job the scheduler considered and could not place, with the reason (for `explain` views).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub job: crate::JobId,
    pub why: &'static str,
}

/// Computes placements for ready jobs. `now_ms` decides which retried jobs are past backoff.
pub fn schedule(state: &State, policy: &SchedulerPolicy, now_ms: u64) -> Plan {
    schedule_explained(state, policy, now_ms).0
}

/// As `schedule`, also returning the jobs it considered and could not place, and why. Jobs are
/// read lazily, tenant by tenant, so those past the point where the plan filled up are not
/// listed.
///
/// Cost: the pending jobs read (placed or skipped), times a lookup in the pool index, plus one
/// pass over the pools per job class in the plan; not the size of the queue or of the fleet
/// per placement.
pub fn schedule_explained(state: &State, policy: &SchedulerPolicy, now_ms: u64) -> (Plan, Vec<Unplaced>) {
    let mut pools = PoolIndex::new(state, policy.strategy, policy.max_indexed_classes);
    let total = state.pools().fold(Resources::ZERO, |acc, p| {
        acc.checked_add(&p.spec.capacity).unwrap_or(acc)
    });
    let mut plan = Plan::default();
    let mut unplaced = Vec::new();
    let full = |plan: &Plan, pools: &PoolIndex| plan.placements.len() >= policy.max_placements || !pools.any_open();

    let mut turns = TenantTurns::new(state);
    for (priority, tenants) in state.pending_queue().levels() {
        if full(&plan, &pools) {
            break;
        }
        turns.start_level(priority, &tenants);
        while !full(&plan, &pools) {
            // Fair share: the tenant with the smallest dominant share goes next.
            let Some(turn) = turns.next_turn(&total) else { break };
            let Some(job) = turns.next_ready(turn, |job| readiness(state, job, now_ms), &mut unplaced) else {
                continue;
            };
            if !turns.quota_admits(turn, &job.spec.resources) {
                unplaced.push(Unplaced {
                    job: job.id,
                    why: "tenant quota",
                });
                continue;
            }
            let Some(slot) = pools.choose(&job.spec) else {
                unplaced.push(Unplaced {
                    job: job.id,
                    why: "no pool has room",
                });
                continue;
            };
            pools.take(slot, &job.spec.resources);
            turns.charge(turn, &job.spec.resources);
            plan.placements.push(Placement {
                job: job.id,
                attempt: job.attempt,
                pool: pools.name(slot).to_string(),
                worker_host: None,
            });
        }
    }
    (plan, unplaced)
}

fn readiness(state: &State, job: &Job, now_ms: u64) -> Result<(), &'static str> {
    debug_assert_eq!(job.state, JobState::Pending);
    if job.not_before_ms > now_ms {
        return Err("retry backoff");
    }
    if !state.needs_satisfied(job) {
        return Err("waiting for needs");
    }
    if state.assignments_of(job.id).next().is_some() {
        return Err("previous worker still live");
    }
    Ok(())
}
