//! The job lifecycle and its legal transitions.
//!
//! ```text
//! PENDING -> SCHEDULED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED
//! SCHEDULED | RUNNING -> PENDING            (retry of a failed attempt: attempt + 1)
//! SCHEDULED | RUNNING -> TERMINATED         (worker lost) -> PENDING (retry) | FAILED | CANCELLED
//! PENDING | SCHEDULED | RUNNING -> FAILED | CANCELLED
//! ```
//! Progress is measured by `(attempt, rank)`: every legal transition raises it, so "state
//! transitions only go forward" is a checkable invariant even with retries.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Pending,
    Scheduled,
    Running,
    /// The worker was lost; waits for the old worker to be confirmed gone, then retries or fails.
    Terminated,
    Succeeded,
    Failed,
    Cancelled,
    /// A manual job waiting for someone to approve it; approval makes it PENDING.
    AwaitingApproval,
    /// Its `if` condition was false at submission, or a job it needs was skipped: it never
    /// runs, and the pipeline succeeds without it.
    Skipped,
}

impl JobState {
    /// Every state. The position is stored on disk (history keys): new states go at the end.
    pub const ALL: [JobState; 9] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Running,
        JobState::Terminated,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::AwaitingApproval,
        JobState::Skipped,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Skipped
        )
    }

    /// True while the job holds (or may hold) a worker.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Scheduled | JobState::Running)
    }

    /// Position within one attempt; a legal transition within an attempt raises it.
    pub fn rank(self) -> u8 {
        match self {
            JobState::AwaitingApproval => 0,
            JobState::Pending => 1,
            JobState::Scheduled => 2,
            JobState::Running => 3,
            JobState::Terminated => 4,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled | JobState::Skipped => 5,
        }
    }

    /// Whether `self -> to` is allowed; `retry` marks the transition back to PENDING that
    /// starts a new attempt. SKIPPED is only ever a job's first state.
    pub fn can_transition_to(self, to: JobState, retry: bool) -> bool {
        use JobState::*;
        match (self, to) {
            (AwaitingApproval, Pending) => !retry,
            (AwaitingApproval, Failed | Cancelled) => !retry,
            (Pending, Scheduled) => !retry,
            (Scheduled, Running) => !retry,
            (Scheduled | Running, Pending) | (Terminated, Pending) => retry,
            (Scheduled | Running, Terminated) => !retry,
            (Scheduled | Running, Succeeded) => !retry,
            (Pending | Scheduled | Running | Terminated, Failed | Cancelled) => !retry,
            _ => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Scheduled => "SCHEDULED",
            JobState::Running => "RUNNING",
            JobState::Terminated => "TERMINATED",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
            JobState::AwaitingApproval => "AWAITING_APPROVAL",
            JobState::Skipped => "SKIPPED",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_legal_transition_moves_forward() {
        for from in JobState::ALL {
            for to in JobState::ALL {
                for retry in [false, true] {
                    if from.can_transition_to(to, retry) {
                        let forward = if retry { true } else { to.rank() > from.rank() };
                        assert!(forward, "{from} -> {to} (retry={retry}) is legal but not forward");
                    }
                }
            }
        }
    }

    #[test]
    fn a_manual_job_leaves_its_wait_only_to_pending_failed_or_cancelled() {
        use JobState::*;
        let exits: Vec<JobState> = JobState::ALL
            .into_iter()
            .filter(|to| AwaitingApproval.can_transition_to(*to, false))
            .collect();
        assert_eq!(exits, vec![Pending, Failed, Cancelled]);
        assert!(!AwaitingApproval.can_transition_to(Pending, true));
        assert!(
            JobState::ALL
                .iter()
                .all(|from| !from.can_transition_to(AwaitingApproval, false)
                    && !from.can_transition_to(AwaitingApproval, true)
                    && !from.can_transition_to(Skipped, false)
                    && !from.can_transition_to(Skipped, true))
        );
        assert!(Skipped.is_terminal() && !AwaitingApproval.is_terminal() && !AwaitingApproval.is_active());
    }

    #[test]
    fn terminal_states_have_no_exit() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobState::ALL {
                assert!(!from.can_transition_to(to, false) && !from.can_transition_to(to, true));
            }
        }
    }
}
