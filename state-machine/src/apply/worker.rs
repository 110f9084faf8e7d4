//! Reports about workers, as observed by the leader: created, started, step progress, exited,
//! lost, terminated, timed out. Every report carries the fencing token of its assignment; a
//! report whose token matches no live assignment is refused, so a deposed leader's late
//! observations cannot change anything. Repeated reports are accepted and change nothing.

use super::{EntryContext, Handled};
use crate::{AttemptOutcome, Event, FailureReason, FencingToken, JobId, JobState, Rejection, Response, State};

const UNCHANGED: Handled = Ok(Response::Done { changed: false });
const CHANGED: Handled = Ok(Response::Done { changed: true });

/// An assignment found by its token: the attempt it belongs to and whether it is being stopped.
struct Fenced {
    attempt: u32,
    releasing: bool,
    /// Whether the assignment is the job's current attempt.
    current: bool,
}

impl State {
    fn fenced(&self, job: JobId, fencing: FencingToken) -> Result<Fenced, Rejection> {
        let j = self.jobs.get(&job).ok_or(Rejection::UnknownJob(job))?;
        let a = self
            .assignments_of(job)
            .find(|a| a.fencing == fencing)
            .ok_or(Rejection::StaleFencing { job, got: fencing })?;
        Ok(Fenced {
            attempt: a.attempt,
            releasing: a.releasing,
            current: a.attempt == j.attempt,
        })
    }

    pub(crate) fn worker_created(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        worker_id: &str,
    ) -> Handled {
        let f = self.fenced(job, fencing)?;
        let a = self.assignments.get_mut(&(job, f.attempt)).expect("fenced");
        match &a.worker_id {
            Some(existing) if existing == worker_id => UNCHANGED,
            Some(existing) => Err(Rejection::WorkerIdMismatch {
                job,
                existing: existing.to_string(),
            }),
            None => {
                a.worker_id = Some(worker_id.into());
                cx.emit(Event::WorkerCreated {
                    job,
                    attempt: f.attempt,
                    worker_id: worker_id.to_string(),
                });
                CHANGED
            }
        }
    }

    pub(crate) fn worker_started(&mut self, cx: &mut EntryContext, job: JobId, fencing: FencingToken) -> Handled {
        let f = self.fenced(job, fencing)?;
        if f.releasing || !f.current || self.jobs[&job].state != JobState::Scheduled {
            return UNCHANGED;
        }
        self.mark_running(cx, job);
        CHANGED
    }

    fn mark_running(&mut self, cx: &mut EntryContext, job: JobId) {
        self.set_job_state(cx, job, JobState::Running, false);
        let j = self.jobs.get_mut(&job).expect("fenced");
        let attempt = j.attempt;
        if let Some(a) = j.current_attempt_mut() {
            a.started_at_ms = Some(cx.now_ms);
        }
        cx.emit(Event::JobStarted { job, attempt });
    }

    /// Checks a step report; `Ok(false)` means it is valid but changes nothing.
    fn step_report_applies(&self, job: JobId, fencing: FencingToken, step: u32) -> Result<bool, Rejection> {
        let f = self.fenced(job, fencing)?;
        let j = &self.jobs[&job];
        let steps = j.spec.steps.len() as u32;
        if step >= steps {
            return Err(Rejection::UnknownStep { job, step, steps });
        }
        Ok(!f.releasing && f.current && j.state.is_active() && step >= j.steps_completed && j.failed_step.is_none())
    }

    pub(crate) fn step_started(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        step: u32,
    ) -> Handled {
        if !self.step_report_applies(job, fencing, step)? || self.jobs[&job].current_step == Some(step) {
            return UNCHANGED;
        }
        if self.jobs[&job].state == JobState::Scheduled {
            self.mark_running(cx, job);
        }
        let j = self.jobs.get_mut(&job).expect("fenced");
        j.current_step = Some(step);
        j.updated_at_ms = cx.now_ms;
        cx.emit(Event::StepStarted {
            job,
            attempt: j.attempt,
            step,
        });
        CHANGED
    }

    pub(crate) fn step_finished(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        step: u32,
        exit_code: i32,
    ) -> Handled {
        if !self.step_report_applies(job, fencing, step)? {
            return UNCHANGED;
        }
        if self.jobs[&job].state == JobState::Scheduled {
            self.mark_running(cx, job);
        }
        let j = self.jobs.get_mut(&job).expect("fenced");
        j.updated_at_ms = cx.now_ms;
        j.current_step = None;
        if exit_code == 0 {
            j.steps_completed = step + 1;
            cx.emit(Event::StepCompleted {
                job,
                attempt: j.attempt,
                step,
            });
        } else {
            j.failed_step = Some(step);
            cx.emit(Event::StepFailed {
                job,
                attempt: j.attempt,
                step,
                exit_code,
            });
        }
        CHANGED
    }

    pub(crate) fn worker_exited(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        exit_code: i32,
        jitter_permille: u16,
    ) -> Handled {
        let f = self.fenced(job, fencing)?;
        // The process is gone: whatever the job's state, the capacity comes back.
        self.release_assignment(cx, job, f.attempt);
        let state = self.jobs[&job].state;
        if !f.current {
            return CHANGED;
        }
        match state {
            JobState::Scheduled | JobState::Running if !f.releasing => {
                if exit_code == 0 {
                    self.succeed_job(cx, job);
                } else {
                    let outcome = AttemptOutcome::ExitCode { code: exit_code };
                    self.retry_or_fail(
                        cx,
                        job,
                        outcome,
                        FailureReason::ExitCode { code: exit_code },
                        jitter_permille,
                    );
                }
            }
            JobState::Terminated => self.after_worker_gone(cx, job, jitter_permille),
            _ => {}
        }
        CHANGED
    }

    pub(crate) fn worker_lost(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        reason: &str,
    ) -> Handled {
        let f = self.fenced(job, fencing)?;
        if f.releasing || !f.current || !self.jobs[&job].state.is_active() {
            return UNCHANGED;
        }
        cx.emit(Event::WorkerFailed {
            job,
            attempt: f.attempt,
            reason: reason.to_string(),
        });
        self.set_job_state(cx, job, JobState::Terminated, false);
        let j = self.jobs.get_mut(&job).expect("fenced");
        if let Some(a) = j.current_attempt_mut() {
            a.outcome = Some(Box::new(AttemptOutcome::Lost {
                reason: reason.to_string(),
            }));
            a.finished_at_ms = Some(cx.now_ms);
        }
        cx.emit(Event::JobTerminated {
            job,
            attempt: f.attempt,
            reason: reason.to_string(),
        });
        self.request_worker_stop(cx, job, f.attempt);
        CHANGED
    }

    pub(crate) fn worker_terminated(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        jitter_permille: u16,
    ) -> Handled {
        let f = self.fenced(job, fencing)?;
        if f.current && !f.releasing && self.jobs[&job].state.is_active() {
            // Gone without being asked to stop and without an exit status: it was lost.
            self.worker_lost(cx, job, fencing, "worker disappeared")?;
        }
        self.release_assignment(cx, job, f.attempt);
        if f.current && self.jobs[&job].state == JobState::Terminated {
            self.after_worker_gone(cx, job, jitter_permille);
        }
        CHANGED
    }

    /// A lost worker is confirmed gone: only now may the job run again elsewhere.
    fn after_worker_gone(&mut self, cx: &mut EntryContext, job: JobId, jitter_permille: u16) {
        let reason = match self.jobs[&job]
            .attempts
            .last()
            .and_then(|a| a.outcome.as_deref().cloned())
        {
            Some(AttemptOutcome::Lost { reason }) => reason,
            _ => "worker lost".to_string(),
        };
        let outcome = AttemptOutcome::Lost { reason: reason.clone() };
        self.retry_or_fail(cx, job, outcome, FailureReason::WorkerLost { reason }, jitter_permille);
    }

    pub(crate) fn job_timed_out(&mut self, cx: &mut EntryContext, job: JobId, fencing: FencingToken) -> Handled {
        let f = self.fenced(job, fencing)?;
        let j = &self.jobs[&job];
        if f.releasing || !f.current || !j.state.is_active() {
            return UNCHANGED;
        }
        let since_ms = j
            .attempts
            .last()
            .map(|a| a.started_at_ms.unwrap_or(a.scheduled_at_ms))
            .unwrap_or(cx.now_ms);
        let elapsed_ms = cx.now_ms.saturating_sub(since_ms);
        if elapsed_ms < j.spec.timeout_ms {
            return Err(Rejection::TimeoutNotReached {
                job,
                elapsed_ms,
                timeout_ms: j.spec.timeout_ms,
            });
        }
        let j = self.jobs.get_mut(&job).expect("fenced");
        if let Some(a) = j.current_attempt_mut() {
            a.outcome = Some(Box::new(AttemptOutcome::Timeout));
            a.finished_at_ms = Some(cx.now_ms);
        }
        self.fail_job(cx, job, FailureReason::Timeout);
        CHANGED
    }
}
