//! `ApplyPlan`: the optimistic half of scheduling. The leader's scheduler proposes placements
//! from a view that may be stale; here each is re-checked against the committed state, so a
//! stale plan can neither oversubscribe a pool nor assign a job twice.

use super::{EntryContext, Handled};
use crate::spec::validate_name;
use crate::{
    AcceptedPlacement, Assignment, AttemptRecord, Event, FencingToken, JobState, Placement, RejectedPlacement,
    Rejection, Resources, Response, State, UnfitNow,
};
use std::collections::BTreeSet;

impl State {
    pub(crate) fn apply_plan(&mut self, cx: &mut EntryContext, placements: &[Placement]) -> Handled {
        let max = self.limits.max_plan_placements;
        if placements.len() > max {
            return Err(Rejection::PlanTooLarge {
                count: placements.len(),
                max,
            });
        }
        let fencing = FencingToken {
            term: cx.position.term,
            log_index: cx.position.log_index,
        };
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        let mut seen = BTreeSet::new();
        let mut touched_pools = BTreeSet::new();
        for p in placements {
            if !seen.insert(p.job) {
                rejected.push(RejectedPlacement {
                    job: p.job,
                    reason: Rejection::DuplicatePlacement { job: p.job },
                });
                continue;
            }
            match self.check_placement(cx.now_ms, p) {
                Err(reason) => rejected.push(RejectedPlacement { job: p.job, reason }),
                Ok(admitted) => {
                    self.place(cx, p, fencing, admitted);
                    touched_pools.insert(p.pool.clone());
                    accepted.push(AcceptedPlacement {
                        job: p.job,
                        attempt: p.attempt,
                        pool: p.pool.clone(),
                        fencing,
                    });
                }
            }
        }
        for pool in touched_pools {
            self.emit_capacity(cx, &pool);
        }
        Ok(Response::PlanApplied { accepted, rejected })
    }

    /// Re-checks one placement against the committed state and computes what it will change,
    /// with checked arithmetic: every sum a placement makes is known to fit before the first
    /// mutation, so `place` cannot fail.
    fn check_placement(&self, now_ms: u64, p: &Placement) -> Result<Admitted, Rejection> {
        if let Some(host) = &p.worker_host {
            validate_name("worker_host", host, &self.limits)?;
        }
        let job = self.jobs.get(&p.job).ok_or(Rejection::UnknownJob(p.job))?;
        if job.state != JobState::Pending {
            return Err(Rejection::WrongState {
                job: p.job,
                state: job.state,
                action: "placement".into(),
            });
        }
        if job.attempt != p.attempt {
            return Err(Rejection::StaleAttempt {
                job: p.job,
                got: p.attempt,
                current: job.attempt,
            });
        }
        if job.not_before_ms > now_ms {
            let why = format!("retry backoff until {} ms", job.not_before_ms);
            return Err(Rejection::NotReady { job: p.job, why });
        }
        if !self.needs_satisfied(job) {
            return Err(Rejection::NotReady {
                job: p.job,
                why: "needs have not succeeded".into(),
            });
        }
        if self.assignments_of(p.job).next().is_some() {
            return Err(Rejection::NotReady {
                job: p.job,
                why: "a previous worker is still live".into(),
            });
        }
        let pool = self
            .pools
            .get(&p.pool)
            .ok_or_else(|| Rejection::UnknownPool(p.pool.clone()))?;
        if let Some(unfit) = pool.unfit_now(&job.spec) {
            let why = match unfit {
                UnfitNow::Never(reason) => reason,
                UnfitNow::Draining => "pool is draining".into(),
                UnfitNow::AtWorkerLimit => format!("{} workers is the maximum", pool.workers),
                UnfitNow::NoRoom => format!("free {} < {}", pool.free(), job.spec.resources),
            };
            return Err(Rejection::NoCapacity {
                job: p.job,
                pool: p.pool.clone(),
                why,
            });
        }
        let tenant = self.tenants.get(job.tenant.as_str());
        if !tenant.is_none_or(|t| t.admits(&job.spec.resources)) {
            return Err(Rejection::QuotaExceeded {
                job: p.job,
                tenant: job.tenant.to_string(),
            });
        }
        let resources = job.spec.resources;
        let (tenant_allocated, tenant_running) = tenant.map_or((Resources::ZERO, 0), |t| (t.allocated, t.running_jobs));
        let in_pool = || Rejection::Overflow {
            job: p.job,
            what: format!("pool {:?} allocation", p.pool),
        };
        let in_tenant = || Rejection::Overflow {
            job: p.job,
            what: format!("tenant {:?} allocation", job.tenant),
        };
        Ok(Admitted {
            pool_allocated: pool.allocated.checked_add(&resources).ok_or_else(in_pool)?,
            pool_workers: pool.workers.checked_add(1).ok_or_else(in_pool)?,
            tenant_allocated: tenant_allocated.checked_add(&resources).ok_or_else(in_tenant)?,
            tenant_running: tenant_running.checked_add(1).ok_or_else(in_tenant)?,
            resources,
            tenant: job.tenant.to_string(),
        })
    }

    fn place(&mut self, cx: &mut EntryContext, p: &Placement, fencing: FencingToken, admitted: Admitted) {
        let Admitted {
            pool_allocated,
            pool_workers,
            tenant_allocated,
            tenant_running,
            resources,
            tenant: tenant_name,
        } = admitted;
        if let Some(pool) = self.pools.get_mut(&p.pool) {
            pool.allocated = pool_allocated;
            pool.workers = pool_workers;
        }
        let tenant = self.tenants.entry(tenant_name.clone()).or_default();
        tenant.allocated = tenant_allocated;
        tenant.running_jobs = tenant_running;
        self.assignments.insert(
            (p.job, p.attempt),
            Box::new(Assignment {
                job: p.job,
                attempt: p.attempt,
                pool: p.pool.as_str().into(),
                tenant: tenant_name.into(),
                resources,
                fencing,
                worker_id: None,
                releasing: false,
                created_at_ms: cx.now_ms,
                worker_host: p.worker_host.clone(),
            }),
        );
        self.set_job_state(cx, p.job, JobState::Scheduled, false);
        if let Some(job) = self.jobs.get_mut(&p.job) {
            // Grown one at a time: most jobs have one attempt, and a growing `Vec` would take
            // room for four.
            job.attempts.reserve_exact(1);
            job.attempts.push(AttemptRecord {
                attempt: p.attempt,
                pool: p.pool.as_str().into(),
                fencing,
                scheduled_at_ms: cx.now_ms,
                started_at_ms: None,
                finished_at_ms: None,
                outcome: None,
                worker_host: p.worker_host.clone(),
                cache: None,
            });
        }
        cx.emit(Event::AssignmentCreated {
            job: p.job,
            attempt: p.attempt,
            pool: p.pool.clone(),
            fencing,
            resources,
        });
    }
}

/// What an admitted placement changes, computed by `check_placement` before any mutation.
struct Admitted {
    pool_allocated: Resources,
    pool_workers: u32,
    tenant_allocated: Resources,
    tenant_running: u32,
    resources: Resources,
    tenant: String,
}
