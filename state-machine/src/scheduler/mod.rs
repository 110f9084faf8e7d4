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
mod score;

pub use policy::{SchedulerPolicy, Strategy};

use crate::{Job, JobId, JobState, Placement, Resources, State};
use std::collections::{BTreeMap, VecDeque};

/// The placements the scheduler proposes, in the order they were chosen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<Placement>,
}

/// A job the scheduler considered and could not place, with the reason (for `explain` views).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    pub job: JobId,
    pub why: &'static str,
}

/// Free room of one pool as the plan fills it.
#[derive(Clone, Debug)]
struct PoolRoom {
    free: Resources,
    workers_left: u32,
}

/// Computes placements for ready jobs. `now_ms` decides which retried jobs are past backoff.
pub fn schedule(state: &State, policy: &SchedulerPolicy, now_ms: u64) -> Plan {
    schedule_explained(state, policy, now_ms).0
}

/// As `schedule`, also returning the ready jobs that could not be placed and why.
pub fn schedule_explained(state: &State, policy: &SchedulerPolicy, now_ms: u64) -> (Plan, Vec<Unplaced>) {
    let mut rooms: BTreeMap<&str, PoolRoom> = state
        .pools()
        .filter(|p| !p.draining)
        .map(|p| (p.name(), PoolRoom { free: p.free(), workers_left: p.spec.max_workers - p.workers }))
        .collect();
    let total = state.pools().fold(Resources::ZERO, |acc, p| acc.checked_add(&p.spec.capacity).unwrap_or(acc));
    let mut usage: BTreeMap<&str, (Resources, u32)> =
        state.assignments().fold(BTreeMap::new(), |mut m, a| {
            let e = m.entry(a.tenant.as_str()).or_insert((Resources::ZERO, 0));
            e.0 = e.0.checked_add(&a.resources).unwrap_or(e.0);
            e.1 += 1;
            m
        });
    let mut plan = Plan::default();
    let mut unplaced = Vec::new();

    // Walk the queue one priority level at a time.
    let mut queue = state.pending_jobs().peekable();
    while let Some(first) = queue.peek() {
        if plan.placements.len() >= policy.max_placements || rooms.values().all(|r| r.workers_left == 0) {
            break;
        }
        let priority = first.spec.priority;
        let mut by_tenant: BTreeMap<&str, VecDeque<&Job>> = BTreeMap::new();
        while let Some(job) = queue.next_if(|j| j.spec.priority == priority) {
            match readiness(state, job, now_ms) {
                Ok(()) => by_tenant.entry(job.tenant.as_str()).or_default().push_back(job),
                Err(why) => unplaced.push(Unplaced { job: job.id, why }),
            }
        }
        while plan.placements.len() < policy.max_placements {
            // Fair share: the tenant with the smallest dominant share goes next.
            let Some(tenant) = by_tenant
                .iter()
                .filter(|(_, q)| !q.is_empty())
                .min_by_key(|(t, _)| (usage.get(*t).map_or(0, |u| u.0.dominant_share_ppm(&total)), **t))
                .map(|(t, _)| *t)
            else {
                break;
            };
            let job = by_tenant.get_mut(tenant).and_then(VecDeque::pop_front).expect("non-empty queue");
            let used = usage.get(tenant).copied().unwrap_or((Resources::ZERO, 0));
            if !quota_admits(state, tenant, used, &job.spec.resources) {
                unplaced.push(Unplaced { job: job.id, why: "tenant quota" });
                continue;
            }
            let Some(pool) = score::choose_pool(state, &rooms, job, policy.strategy) else {
                unplaced.push(Unplaced { job: job.id, why: "no pool has room" });
                continue;
            };
            let room = rooms.get_mut(pool).expect("chosen from rooms");
            room.free = room.free.saturating_sub(&job.spec.resources);
            room.workers_left -= 1;
            let e = usage.entry(tenant).or_insert((Resources::ZERO, 0));
            e.0 = e.0.checked_add(&job.spec.resources).unwrap_or(e.0);
            e.1 += 1;
            plan.placements.push(Placement { job: job.id, attempt: job.attempt, pool: pool.to_string() });
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

fn quota_admits(state: &State, tenant: &str, used: (Resources, u32), req: &Resources) -> bool {
    state.tenant(tenant).and_then(|t| t.quota.as_ref()).is_none_or(|q| q.admits(&used.0, used.1, req))
}
