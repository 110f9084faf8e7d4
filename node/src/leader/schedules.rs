//! The schedule tick: every schedule whose due time has come is fired, once, by the leader:
//! `cron::fire_plan` decides whether the time runs or is skipped (missed while the cluster
//! had no leader) and the next due time; for a run the leader reads the head of the branch
//! and the pipeline file there, and commits `FireSchedule` for exactly that due time, which
//! `apply` refuses if it was fired already (by a leader before this one).

use super::{LeaderContext, LeaderError};
use crate::source::cron::{NEVER_MS, fire_plan, next_after};
use flotilla_state_machine::schedule::Schedule;
use flotilla_state_machine::{Command, Proposal, Repository, ScheduledRun, Source, SourceEvent};

/// Schedules fired per tick at most (each may fetch a repository).
const FIRE_PER_TICK: usize = 16;

impl LeaderContext<'_> {
    /// Fires what is due, in `term`. Returns how many due times were fired.
    pub(super) async fn fire_schedules(&self, term: u64) -> Result<usize, LeaderError> {
        let now_ms = self.proposer.now_ms();
        let due: Vec<(Schedule, Option<Repository>)> = {
            let data = self.machine.read();
            data.state
                .schedules()
                .filter(|s| s.next_due_ms <= now_ms)
                .take(FIRE_PER_TICK)
                .map(|s| (s.clone(), data.state.repository(&s.tenant, &s.spec.repository).cloned()))
                .collect()
        };
        let mut fired = 0;
        for (schedule, repo) in due {
            if !self.leadership.holds(term) {
                return Err(LeaderError::Deposed { term });
            }
            let plan = fire_plan(schedule.next_due_ms, now_ms, schedule.spec.missed, |after| {
                next_after(&schedule.spec.cron, after)
            });
            if plan.next_due_ms == NEVER_MS {
                tracing::warn!(schedule = %schedule.spec.name, "a schedule's cron expression names no time after this one: it fires now for the last time");
            }
            let run = match (plan.skipped, repo) {
                (Some(reason), _) => ScheduledRun::Skip { reason },
                (None, None) => ScheduledRun::Fail {
                    reason: format!("repository {:?} no longer exists", schedule.spec.repository),
                },
                (None, Some(repo)) => self.scheduled_run(&schedule, &repo).await,
            };
            let command = Command::FireSchedule {
                tenant: schedule.tenant.clone(),
                name: schedule.spec.name.clone(),
                due_ms: schedule.next_due_ms,
                next_due_ms: plan.next_due_ms,
                run: Box::new(run),
            };
            let answer = self
                .proposer
                .commit_here(Proposal::new(self.proposer.now_ms(), command))
                .await
                .map_err(|source| LeaderError::Propose {
                    command: "fire_schedule",
                    source,
                })?;
            if let Some(r) = answer.rejection() {
                tracing::debug!(schedule = %schedule.spec.name, reason = %r, "a schedule's firing was refused");
            } else {
                fired += 1;
            }
        }
        Ok(fired)
    }

    /// The run of `schedule`: the pipeline file at the head of its branch, or why not.
    async fn scheduled_run(&self, schedule: &Schedule, repo: &Repository) -> ScheduledRun {
        let token = match crate::source::token(&self.machine.read().state, self.keyring, repo) {
            Ok(token) => token,
            Err(e) => {
                return ScheduledRun::Fail {
                    reason: format!("the fetch token: {e}"),
                };
            }
        };
        let reference = format!("refs/heads/{}", schedule.spec.branch);
        let commit = match self.sources.resolve(repo, token.clone(), &reference).await {
            Ok(Some(commit)) => commit,
            Ok(None) => {
                return ScheduledRun::Fail {
                    reason: format!("{} has no {reference}", repo.spec.url),
                };
            }
            Err(e) => {
                return ScheduledRun::Fail {
                    reason: format!("asking {}: {e}", repo.spec.url),
                };
            }
        };
        let spec = match self.sources.read_spec(repo, token, &commit, Some(&reference)).await {
            Ok(spec) => spec,
            Err(e) => return ScheduledRun::Fail { reason: e.to_string() },
        };
        ScheduledRun::Run {
            spec,
            source: Source {
                repository: repo.spec.name.clone(),
                commit,
                reference: Some(reference),
                event: SourceEvent::Schedule,
                author: None,
                pull_request: None,
                delivery: None,
            },
        }
    }
}
