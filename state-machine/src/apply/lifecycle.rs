//! Transitions shared by several commands: ending a job (and, through the DAG, its
//! dependants), retrying it, releasing capacity, and closing its pipeline.

use super::EntryContext;
use crate::{AttemptOutcome, Event, FailureReason, Job, JobId, JobState, PipelineState, QueueKey, State};

/// Whether a finished `need` lets the jobs that need it run.
pub(crate) fn satisfies_dependants(need: &Job) -> bool {
    need.state == JobState::Succeeded || (need.state == JobState::Failed && need.spec.allow_failure)
}

impl State {
    /// Moves `job` to `to`, keeping the pending queue in step. Panics on an illegal transition:
    /// handlers check legality before calling, so reaching one is a bug, not bad input.
    pub(crate) fn set_job_state(&mut self, cx: &EntryContext, job: JobId, to: JobState, retry: bool) {
        let j = self.jobs.get_mut(&job).expect("set_job_state on unknown job");
        assert!(
            j.state.can_transition_to(to, retry),
            "illegal transition {} -> {to} for {job}",
            j.state
        );
        if j.state == JobState::Pending {
            self.pending.remove(&QueueKey::new(j.spec.priority, &j.tenant, job));
        }
        if to == JobState::Pending {
            self.pending.insert(QueueKey::new(j.spec.priority, &j.tenant, job));
        }
        self.index.job_moved(&j.tenant, j.state, to, job);
        j.state = to;
        j.updated_at_ms = cx.now_ms;
    }

    fn record_outcome(&mut self, cx: &EntryContext, job: JobId, outcome: AttemptOutcome) {
        let j = self.jobs.get_mut(&job).expect("record_outcome on unknown job");
        if let Some(a) = j.current_attempt_mut()
            && a.outcome.is_none()
        {
            a.outcome = Some(Box::new(outcome));
            a.finished_at_ms = Some(cx.now_ms);
        }
    }

    /// Marks the live assignment of `(job, attempt)` as no longer wanted and asks the leader to
    /// stop its worker. Capacity stays held until the worker is confirmed gone.
    pub(crate) fn request_worker_stop(&mut self, cx: &mut EntryContext, job: JobId, attempt: u32) {
        if let Some(a) = self.assignments.get_mut(&(job, attempt))
            && !a.releasing
        {
            a.releasing = true;
            cx.emit(Event::WorkerStopRequested {
                job,
                attempt,
                fencing: a.fencing,
            });
        }
    }

    /// Removes the assignment of `(job, attempt)` and gives its capacity back. What is given
    /// back was added by the placement, so the subtractions cannot underflow while the
    /// invariants hold (checked after every apply in debug builds); they saturate rather than
    /// panic, so a release build never aborts on them.
    pub(crate) fn release_assignment(&mut self, cx: &mut EntryContext, job: JobId, attempt: u32) {
        let Some(a) = self.assignments.remove(&(job, attempt)) else {
            return;
        };
        if let Some(pool) = self.pools.get_mut(a.pool.as_str()) {
            debug_assert!(a.resources.fits_within(&pool.allocated), "pool allocation underflow");
            pool.allocated = pool.allocated.saturating_sub(&a.resources);
            pool.workers = pool.workers.saturating_sub(1);
        }
        if let Some(tenant) = self.tenants.get_mut(a.tenant.as_str()) {
            debug_assert!(
                a.resources.fits_within(&tenant.allocated),
                "tenant allocation underflow"
            );
            tenant.allocated = tenant.allocated.saturating_sub(&a.resources);
            tenant.running_jobs = tenant.running_jobs.saturating_sub(1);
        }
        cx.emit(Event::WorkerTerminated {
            job,
            attempt,
            pool: a.pool.to_string(),
        });
        self.emit_capacity(cx, &a.pool);
        // The last worker of a finished pipeline gone: it may be removed from now on.
        if let Some(pipeline) = self.jobs.get(&job).map(|j| j.pipeline) {
            self.settle_if_idle(cx, pipeline);
        }
    }

    pub(crate) fn emit_capacity(&self, cx: &mut EntryContext, pool: &str) {
        let Some(p) = self.pools.get(pool) else { return };
        cx.emit(Event::CapacityUpdated {
            pool: pool.to_string(),
            capacity: p.spec.capacity,
            allocated: p.allocated,
            workers: p.workers,
            draining: p.draining,
        });
    }

    /// Ends the current attempt as a success.
    pub(crate) fn succeed_job(&mut self, cx: &mut EntryContext, job: JobId) {
        self.record_outcome(cx, job, AttemptOutcome::Succeeded);
        self.set_job_state(cx, job, JobState::Succeeded, false);
        let attempt = self.jobs[&job].attempt;
        cx.emit(Event::JobCompleted { job, attempt });
        self.after_job_finished(cx, job);
    }

    /// Retries the job if its policy allows, else fails it with `reason`.
    pub(crate) fn retry_or_fail(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        outcome: AttemptOutcome,
        reason: FailureReason,
        jitter_permille: u16,
    ) {
        self.record_outcome(cx, job, outcome);
        let j = &self.jobs[&job];
        if j.retries_left() == 0 {
            self.fail_job(cx, job, reason);
            return;
        }
        let next = j.attempt.saturating_add(1);
        let not_before_ms = cx.now_ms.saturating_add(j.spec.retry.backoff_ms(next, jitter_permille));
        self.set_job_state(cx, job, JobState::Pending, true);
        let j = self.jobs.get_mut(&job).expect("job vanished");
        j.attempt = next;
        j.not_before_ms = not_before_ms;
        j.current_step = None;
        j.steps_completed = 0;
        j.failed_step = None;
        j.stream_offset = 0;
        cx.emit(Event::JobRetrying {
            job,
            attempt: next,
            not_before_ms,
        });
    }

    /// Ends the job as FAILED and fails (or releases) its dependants through the DAG.
    pub(crate) fn fail_job(&mut self, cx: &mut EntryContext, job: JobId, reason: FailureReason) {
        let attempt = self.jobs[&job].attempt;
        self.request_worker_stop(cx, job, attempt);
        self.set_job_state(cx, job, JobState::Failed, false);
        self.jobs.get_mut(&job).expect("job vanished").failure = Some(Box::new(reason.clone()));
        cx.emit(Event::JobFailed { job, attempt, reason });
        self.after_job_finished(cx, job);
    }

    /// Ends the job as CANCELLED, stopping its worker if it has one.
    pub(crate) fn cancel(&mut self, cx: &mut EntryContext, job: JobId) {
        let attempt = self.jobs[&job].attempt;
        self.record_outcome(cx, job, AttemptOutcome::Cancelled);
        self.request_worker_stop(cx, job, attempt);
        self.set_job_state(cx, job, JobState::Cancelled, false);
        cx.emit(Event::JobCancelled { job, attempt });
        self.after_job_finished(cx, job);
    }

    /// Propagates a finished job through the DAG, then closes its pipeline if all jobs ended.
    fn after_job_finished(&mut self, cx: &mut EntryContext, job: JobId) {
        let j = &self.jobs[&job];
        let pipeline = j.pipeline;
        let propagate = match j.state {
            JobState::Failed if !j.spec.allow_failure => Some(JobState::Failed),
            JobState::Cancelled => Some(JobState::Cancelled),
            _ => None,
        };
        if let Some(to) = propagate {
            let name = j.spec.name.clone();
            // Dependants cannot have started (their need had not finished), so they are
            // PENDING, or AWAITING_APPROVAL (a manual job is approved only once its needs
            // let it run).
            let waiting = |s: JobState| matches!(s, JobState::Pending | JobState::AwaitingApproval);
            let dependants: Vec<JobId> = j
                .dependants
                .iter()
                .copied()
                .filter(|d| waiting(self.jobs[d].state))
                .collect();
            for d in dependants {
                if !waiting(self.jobs[&d].state) {
                    continue; // reached through another path already
                }
                match to {
                    JobState::Failed => self.fail_job(cx, d, FailureReason::DependencyFailed { job: name.to_string() }),
                    _ => self.cancel(cx, d),
                }
            }
        }
        self.close_pipeline_if_done(cx, pipeline);
    }

    pub(crate) fn close_pipeline_if_done(&mut self, cx: &mut EntryContext, pipeline: crate::PipelineId) {
        let p = &self.pipelines[&pipeline];
        if p.state.is_terminal() {
            return;
        }
        let mut state = PipelineState::Succeeded;
        for id in &p.jobs {
            let j = &self.jobs[id];
            match j.state {
                s if !s.is_terminal() => return,
                JobState::Failed if !j.spec.allow_failure => state = PipelineState::Failed,
                JobState::Cancelled if state == PipelineState::Succeeded => state = PipelineState::Cancelled,
                _ => {}
            }
        }
        let Some(p) = self.pipelines.get_mut(&pipeline) else {
            return;
        };
        self.index.pipeline_moved(&p.tenant, p.state, state, pipeline);
        p.state = state;
        p.finished_at_ms = Some(cx.now_ms);
        cx.emit(Event::PipelineCompleted { pipeline, state });
        self.settle_if_idle(cx, pipeline);
    }
}
