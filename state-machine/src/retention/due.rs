//! The leader's choice of what retention removes now: a pure function of the state.
//!
//! Each tenant's settled pipelines are ordered by finish time, so what is due under an age or
//! a count is a prefix: the scan stops at the first pipeline that is not due, and a call
//! costs the tenants plus what it returns. `apply` re-checks every choice.

use crate::{PipelineId, State};

/// Most pipelines (whole or output only) one `ExpireHistory` names: about 16 bytes each in
/// the entry, and removing them costs their jobs.
pub const MAX_EXPIRE_PER_COMMAND: usize = 1_000;

/// What to remove: whole pipelines (with jobs and output) and pipelines' output alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpirePlan {
    pub pipelines: Vec<PipelineId>,
    pub outputs: Vec<PipelineId>,
}

impl ExpirePlan {
    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty() && self.outputs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pipelines.len() + self.outputs.len()
    }
}

/// What is due for removal at `now_ms` (the leader's clock, as for the scheduler: an idle
/// cluster's state clock stands still), at most `max` pipelines in all.
pub fn due(state: &State, now_ms: u64, max: usize) -> ExpirePlan {
    let retention = state.retention();
    let mut plan = ExpirePlan::default();
    for (tenant, settled) in retention.settled() {
        if plan.len() >= max {
            break;
        }
        let Some(policy) = retention.policy_for(tenant) else {
            continue;
        };
        let mut kept = settled.len();
        let mut last_removed = None;
        for (finished_at_ms, id) in settled.pipelines() {
            if plan.len() >= max || !(policy.pipeline_expired(finished_at_ms, now_ms) || policy.over_count(kept)) {
                break;
            }
            plan.pipelines.push(id);
            last_removed = Some((finished_at_ms, id));
            kept -= 1;
        }
        for key in settled.with_output() {
            if plan.len() >= max || !policy.output_expired(key.0, now_ms) {
                break;
            }
            // A pipeline removed whole takes its output along.
            if last_removed.is_some_and(|last| key <= last) {
                continue;
            }
            plan.outputs.push(key.1);
        }
    }
    plan
}
