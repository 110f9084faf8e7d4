//! Whose turn it is within one priority level: tenants take turns by fair share (the one using
//! the smallest dominant share of the cluster goes next), each reading its own jobs in
//! submission order, lazily, from the pending queue.

use super::Unplaced;
use crate::{Job, Resources, State, TenantRun};
use std::collections::BTreeMap;

/// One tenant's place in the turns of a level.
struct Turn<'a> {
    tenant: &'a str,
    run: TenantRun<'a>,
    exhausted: bool,
    /// Resources and job count the tenant holds, plus what this plan gave it.
    used: (Resources, u32),
}

/// The tenants of the current priority level and their progress through their queues, and
/// what every tenant holds, counting this plan's placements at earlier levels.
pub(super) struct TenantTurns<'a> {
    state: &'a State,
    turns: Vec<Turn<'a>>,
    /// What this plan gave each tenant so far, across levels.
    charged: BTreeMap<&'a str, (Resources, u32)>,
}

impl<'a> TenantTurns<'a> {
    pub(super) fn new(state: &'a State) -> Self {
        TenantTurns {
            state,
            turns: Vec::new(),
            charged: BTreeMap::new(),
        }
    }

    /// Starts the turns of the tenants with jobs at `priority`.
    pub(super) fn start_level(&mut self, priority: i32, tenants: &[&'a str]) {
        let state = self.state;
        self.turns = tenants
            .iter()
            .map(|&tenant| {
                let held = state
                    .tenant(tenant)
                    .map_or((Resources::ZERO, 0), |t| (t.allocated, t.running_jobs));
                let (res, jobs) = self.charged.get(tenant).copied().unwrap_or((Resources::ZERO, 0));
                let used = (held.0.checked_add(&res).unwrap_or(held.0), held.1 + jobs);
                Turn {
                    tenant,
                    run: state.pending_queue().jobs_of(priority, tenant),
                    exhausted: false,
                    used,
                }
            })
            .collect();
    }

    /// The tenant to serve next (smallest dominant share of `total`, then name), or `None` when
    /// every tenant's jobs have been read.
    pub(super) fn next_turn(&self, total: &Resources) -> Option<usize> {
        self.turns
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.exhausted)
            .min_by_key(|(_, t)| (t.used.0.dominant_share_ppm(total), t.tenant))
            .map(|(i, _)| i)
    }

    /// The tenant's next job that `ready` accepts; the ones it refuses go to `unplaced` with
    /// its reason. `None` (and the tenant is done for this plan) when its queue is read out.
    pub(super) fn next_ready(
        &mut self,
        turn: usize,
        ready: impl Fn(&Job) -> Result<(), &'static str>,
        unplaced: &mut Vec<Unplaced>,
    ) -> Option<&'a Job> {
        let t = &mut self.turns[turn];
        for id in t.run.by_ref() {
            let Some(job) = self.state.job(id) else { continue };
            match ready(job) {
                Ok(()) => return Some(job),
                Err(why) => unplaced.push(Unplaced { job: id, why }),
            }
        }
        t.exhausted = true;
        None
    }

    /// Whether the tenant's quota admits one more job asking `req`.
    pub(super) fn quota_admits(&self, turn: usize, req: &Resources) -> bool {
        let t = &self.turns[turn];
        self.state
            .tenant(t.tenant)
            .and_then(|x| x.quota.as_ref())
            .is_none_or(|q| q.admits(&t.used.0, t.used.1, req))
    }

    /// Counts a placement of `req` against the tenant.
    pub(super) fn charge(&mut self, turn: usize, req: &Resources) {
        let t = &mut self.turns[turn];
        for used in [
            &mut t.used,
            self.charged.entry(t.tenant).or_insert((Resources::ZERO, 0)),
        ] {
            used.0 = used.0.checked_add(req).unwrap_or(used.0);
            used.1 += 1;
        }
    }
}
