//! The retention tick: ask the pure `retention::due` what the policies make removable at the
//! cluster's time, and commit it as `ExpireHistory` entries (each re-checked in `apply`).
//! A tick commits at most `MAX_ROUNDS_PER_TICK` full entries, so a backlog (a policy newly
//! set on a long history) drains over a few ticks without crowding out other proposals.

use super::{LeaderContext, LeaderError};
use flotilla_state_machine::retention::{MAX_EXPIRE_PER_COMMAND, due};
use flotilla_state_machine::{Command, Proposal, Response};

/// Full `ExpireHistory` entries one tick may commit.
const MAX_ROUNDS_PER_TICK: usize = 8;

impl LeaderContext<'_> {
    /// Commits what is due, in `term`. Returns the number of pipelines named.
    pub(super) async fn expire(&self, term: u64) -> Result<usize, LeaderError> {
        let mut named = 0;
        for _ in 0..MAX_ROUNDS_PER_TICK {
            let now_ms = self.proposer.now_ms();
            let plan = {
                let data = self.machine.read();
                due(&data.state, now_ms, MAX_EXPIRE_PER_COMMAND)
            };
            if plan.is_empty() {
                break;
            }
            if !self.leadership.holds(term) {
                return Err(LeaderError::Deposed { term });
            }
            let full = plan.len() >= MAX_EXPIRE_PER_COMMAND;
            named += plan.len();
            let command = Command::ExpireHistory {
                pipelines: plan.pipelines,
                outputs: plan.outputs,
            };
            let answer = self
                .proposer
                .commit_here(Proposal::new(now_ms, command))
                .await
                .map_err(|source| LeaderError::Propose {
                    command: "expire_history",
                    source,
                })?;
            // Nothing changed: the choice was stale (a policy changed meanwhile); the next
            // tick chooses afresh.
            if answer == (Response::Done { changed: false }) || !full {
                break;
            }
        }
        Ok(named)
    }

    /// Commits the removal of artifacts past their expiry, in `term`. Returns how many.
    pub(super) async fn expire_artifacts(&self, term: u64) -> Result<usize, LeaderError> {
        let now_ms = self.proposer.now_ms();
        let jobs = self
            .machine
            .read()
            .state
            .artifacts()
            .expired(now_ms, flotilla_state_machine::MAX_EXPIRE_ARTIFACTS);
        if jobs.is_empty() {
            return Ok(0);
        }
        if !self.leadership.holds(term) {
            return Err(LeaderError::Deposed { term });
        }
        let named = jobs.len();
        self.proposer
            .commit_here(Proposal::new(now_ms, Command::ExpireArtifacts { jobs }))
            .await
            .map_err(|source| LeaderError::Propose {
                command: "expire_artifacts",
                source,
            })?;
        Ok(named)
    }
}
