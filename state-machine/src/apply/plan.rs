//! `ApplyPlan`: the optimistic half of scheduling. The leader's scheduler proposes placements
//! from a view that may be stale; here each is re-checked against the committed state, so a
//! stale plan can neither oversubscribe a pool nor assign a job twice.

use super::{Cx, Handled};
use crate::{
    AcceptedPlacement, Assignment, AttemptRecord, Event, FencingToken, JobState, Placement, Rejection, RejectedPlacement,
    Response, State,
};
use std::collections::BTreeSet;

impl State {
    pub(crate) fn apply_plan(&mut self, cx: &mut Cx, placements: &[Placement]) -> Handled {
        let max = self.limits.max_plan_placements;
        if placements.len() > max {
            return Err(Rejection::PlanTooLarge { count: placements.len(), max });
        }
        let fencing = FencingToken { term: cx.ctx.term, log_index: cx.ctx.log_index };
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut seen = BTreeSet::new();
        let mut touched_pools = BTreeSet::new();
        for p in placements {
            if !seen.insert(p.job) {
                rejected.push(RejectedPlacement { job: p.job, reason: Rejection::DuplicatePlacement { job: p.job } });
                continue;
            }
            match self.check_placement(cx.now_ms, p) {
                Err(reason) => rejected.push(RejectedPlacement { job: p.job, reason }),
                Ok(()) => {
                    self.place(cx, p, fencing);
                    touched_pools.insert(p.pool.clone());
                    accepted.push(AcceptedPlacement { job: p.job, attempt: p.attempt, pool: p.pool.clone(), fencing });
                }
            }
        }
        for pool in touched_pools {
            self.emit_capacity(cx, &pool);
        }
        Ok(Response::PlanApplied { accepted, rejected })
    }

    fn check_placement(&self, now_ms: u64, p: &Placement) -> Result<(), Rejection> {
        let job = self.jobs.get(&p.job).ok_or(Rejection::UnknownJob(p.job))?;
        if job.state != JobState::Pending {
            return Err(Rejection::WrongState { job: p.job, state: job.state, action: "placement".into() });
        }
        if job.attempt != p.attempt {
            return Err(Rejection::StaleAttempt { job: p.job, got: p.attempt, current: job.attempt });
        }
        if job.not_before_ms > now_ms {
            let why = format!("retry backoff until {} ms", job.not_before_ms);
            return Err(Rejection::NotReady { job: p.job, why });
        }
        if !self.needs_satisfied(job) {
            return Err(Rejection::NotReady { job: p.job, why: "needs have not succeeded".into() });
        }
        if self.assignments_of(p.job).next().is_some() {
            return Err(Rejection::NotReady { job: p.job, why: "a previous worker is still live".into() });
        }
        let pool = self.pools.get(&p.pool).ok_or_else(|| Rejection::UnknownPool(p.pool.clone()))?;
        if !pool.fits_now(&job.spec) {
            let why = match pool.static_misfit(&job.spec) {
                Some(reason) => reason,
                None if pool.draining => "pool is draining".into(),
                None if pool.workers >= pool.spec.max_workers => format!("{} workers is the maximum", pool.workers),
                None => format!("free {} < {}", pool.free(), job.spec.resources),
            };
            return Err(Rejection::NoCapacity { job: p.job, pool: p.pool.clone(), why });
        }
        if !self.tenants.get(&job.tenant).is_none_or(|t| t.admits(&job.spec.resources)) {
            return Err(Rejection::QuotaExceeded { job: p.job, tenant: job.tenant.clone() });
        }
        Ok(())
    }

    fn place(&mut self, cx: &mut Cx, p: &Placement, fencing: FencingToken) {
        let job = &self.jobs[&p.job];
        let resources = job.spec.resources;
        let tenant_name = job.tenant.clone();
        let pool = self.pools.get_mut(&p.pool).expect("checked");
        pool.allocated = pool.allocated.checked_add(&resources).expect("checked to fit");
        pool.workers += 1;
        let tenant = self.tenants.entry(tenant_name.clone()).or_default();
        tenant.allocated = tenant.allocated.checked_add(&resources).expect("checked by quota");
        tenant.running_jobs += 1;
        self.assignments.insert(
            (p.job, p.attempt),
            Assignment {
                job: p.job,
                attempt: p.attempt,
                pool: p.pool.clone(),
                tenant: tenant_name,
                resources,
                fencing,
                worker_id: None,
                releasing: false,
                created_at_ms: cx.now_ms,
            },
        );
        self.set_job_state(cx, p.job, JobState::Scheduled, false);
        let job = self.jobs.get_mut(&p.job).expect("checked");
        job.attempts.push(AttemptRecord {
            attempt: p.attempt,
            pool: p.pool.clone(),
            fencing,
            scheduled_at_ms: cx.now_ms,
            started_at_ms: None,
            finished_at_ms: None,
            outcome: None,
        });
        cx.emit(Event::AssignmentCreated { job: p.job, attempt: p.attempt, pool: p.pool.clone(), fencing, resources });
    }
}
