//! The placement tick: run the pure scheduler over the applied state and commit its plan as one
//! `ApplyPlan` entry (never batched: a plan's fencing tokens come from its entry's index), then
//! count what `apply` accepted and record a `scheduler.place` span per placed job.

use super::{LeaderContext, LeaderError};
use crate::observe::telemetry;
use flotilla_state_machine::scheduler::schedule;
use flotilla_state_machine::{Command, Proposal, Response};
use opentelemetry::KeyValue;
use std::time::{Instant, SystemTime};

impl LeaderContext<'_> {
    /// Runs the scheduler and commits its plan, in `term`. Returns the number of placements
    /// `apply` accepted.
    pub(super) async fn place(&self, term: u64) -> Result<usize, LeaderError> {
        let started = Instant::now();
        let started_at = SystemTime::now();
        let now_ms = self.proposer.now_ms();
        let plan = {
            let data = self.machine.read();
            let mut plan = schedule(&data.state, &self.config.policy, now_ms);
            // A worker only some nodes can see is bound to where the placing leader's workers of
            // its kind live (its host, or a shared engine): only a leader that reaches it there
            // will create, observe or report on it.
            for p in &mut plan.placements {
                let kind = data.state.pool(&p.pool).map(|pool| pool.spec.provider);
                p.worker_host = kind.and_then(|k| self.whereabouts.of(k)).map(str::to_string);
            }
            plan
        };
        if plan.placements.is_empty() {
            return Ok(0);
        }
        if !self.leadership.holds(term) {
            return Err(LeaderError::Deposed { term });
        }
        let command = Command::ApplyPlan {
            placements: plan.placements,
        };
        let answer = self
            .proposer
            .commit_here(Proposal::new(now_ms, command))
            .await
            .map_err(|source| LeaderError::Propose {
                command: "apply_plan",
                source,
            })?;
        let Response::PlanApplied { accepted, rejected } = answer else {
            tracing::debug!(response = ?answer, "plan not applied");
            return Ok(0);
        };
        self.metrics
            .scheduler_plan_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.scheduler_placements.inc_by(accepted.len() as u64);
        self.metrics.scheduler_rejected_placements.inc_by(rejected.len() as u64);
        let data = self.machine.read();
        for placed in &accepted {
            let trace = data.state.trace_parent_of_job(placed.job);
            let attributes = vec![
                KeyValue::new("flotilla.job", placed.job.to_string()),
                KeyValue::new("flotilla.pool", placed.pool.clone()),
                KeyValue::new("flotilla.placements_in_plan", (accepted.len() + rejected.len()) as i64),
            ];
            telemetry::record("scheduler.place", trace, started_at, SystemTime::now(), attributes);
        }
        Ok(accepted.len())
    }
}
