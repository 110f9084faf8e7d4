//! Schedules: a repository's pipeline file run at the head of a branch at times a cron
//! expression names. The state holds each schedule's next due time; the leader, once that
//! time has come, reads the branch and commits `FireSchedule` for exactly that due time with
//! the next one (computed from the cron expression on the node: `apply` keeps no calendar),
//! so each due time fires once across leader changes: a second `FireSchedule` for the same
//! due time is refused. Due times missed while the cluster had no leader are skipped or run
//! once, as the schedule says.

use crate::spec::validate_name;
use crate::{Limits, PipelineId, SpecError};
use serde::{Deserialize, Serialize};

/// Most schedules one tenant may have.
pub const MAX_SCHEDULES_PER_TENANT: usize = 100;
/// Longest cron expression.
pub const MAX_CRON_BYTES: usize = 128;

/// What to do about due times that passed while nobody could fire them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Skip them: the next run is at the next due time to come.
    #[default]
    Skip,
    /// Run once for all of them, as soon as a leader can.
    RunOnce,
}

/// A schedule as its owner sets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    /// A repository of the same tenant.
    pub repository: String,
    pub branch: String,
    /// Five fields (minute hour day month weekday) or six (seconds first), in UTC.
    pub cron: String,
    #[serde(default)]
    pub missed: MissedPolicy,
}

impl ScheduleSpec {
    /// Checks the names and the expression's size (its meaning is checked by the node).
    pub fn validate(&self, limits: &Limits) -> Result<(), SpecError> {
        validate_name("name", &self.name, limits)?;
        validate_name("repository", &self.repository, limits)?;
        let branch_ok = !self.branch.is_empty()
            && self.branch.len() <= crate::repository::MAX_PATH_BYTES
            && !self.branch.starts_with('-')
            && !self.branch.contains("..")
            && !self
                .branch
                .chars()
                .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
        if !branch_ok {
            return Err(SpecError::Conflict {
                field: "branch".into(),
                reason: format!("{:?} is not a branch name", self.branch),
            });
        }
        if self.cron.is_empty() || self.cron.len() > MAX_CRON_BYTES || self.cron.chars().any(char::is_control) {
            return Err(SpecError::Conflict {
                field: "cron".into(),
                reason: format!("a cron expression of at most {MAX_CRON_BYTES} bytes"),
            });
        }
        Ok(())
    }
}

/// What came of a schedule's last due time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FireOutcome {
    /// It ran this pipeline.
    Started { pipeline: PipelineId },
    /// Nothing ran, and why (a missed time under `skip`).
    Skipped { reason: String },
    /// It should have run and could not (the branch, the file, the spec), and why.
    Failed { reason: String },
}

/// The replicated record of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub tenant: String,
    pub spec: ScheduleSpec,
    /// The next time it fires, in the cluster's milliseconds.
    pub next_due_ms: u64,
    /// The last due time fired, and what came of it.
    pub last: Option<(u64, FireOutcome)>,
    pub created_at_ms: u64,
}
