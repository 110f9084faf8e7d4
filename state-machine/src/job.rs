//! The replicated record of one job: its spec, where it is in the lifecycle, its attempts.
//!
//! Enums here use serde's default (external) tagging: snapshots are bincode, which cannot
//! decode internally tagged enums.

use crate::{FencingToken, JobId, JobSpec, JobState, PipelineId};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Why a job ended in FAILED.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    ExitCode {
        code: i32,
    },
    Timeout,
    WorkerLost {
        reason: String,
    },
    DependencyFailed {
        job: String,
    },
    /// The steps ended but the files of its `artifacts` could not be kept.
    Artifacts {
        reason: String,
    },
}

/// What a person or a condition decided about a job before it ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    /// A manual job approved: by whom (the token's name) and when.
    Approved { by: String, at_ms: u64 },
    /// Skipped at submission, and why (its condition, or a need skipped).
    Skipped { reason: String },
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    ExitCode { code: i32 },
    Timeout,
    Lost { reason: String },
    Cancelled,
    ArtifactsFailed { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub pool: CompactString,
    pub fencing: FencingToken,
    pub scheduled_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// Boxed: set once an attempt ends, and a running job has no use for its room.
    pub outcome: Option<Box<AttemptOutcome>>,
    /// The host the attempt's worker lives on, if only one host can see it.
    #[serde(default)]
    pub worker_host: Option<String>,
    /// What it did with its job's cache (boxed: most jobs have none).
    #[serde(default)]
    pub cache: Option<Box<crate::AttemptCache>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub pipeline: PipelineId,
    pub tenant: CompactString,
    pub spec: JobSpec,
    /// Ids of the jobs named in `spec.needs`, resolved at submission (fixed from then on, so
    /// a boxed slice: no spare capacity).
    pub needs: Box<[JobId]>,
    /// Jobs that name this one in their `needs`.
    pub dependants: Box<[JobId]>,
    pub state: JobState,
    /// Current attempt, starting at 1.
    pub attempt: u32,
    /// A retried job is not placed before this time.
    pub not_before_ms: u64,
    /// Index of the last step reported started, and how many steps completed.
    pub current_step: Option<u32>,
    pub steps_completed: u32,
    /// The step of the current attempt that failed, once reported (a repeat changes nothing).
    pub failed_step: Option<u32>,
    /// Boxed, as `AttemptRecord::outcome`.
    pub failure: Option<Box<FailureReason>>,
    pub attempts: Vec<AttemptRecord>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Bytes of log stored for this job (all attempts, truncation marker included).
    pub log_bytes: u64,
    /// Position reached in the current attempt's output stream; `AppendLog` offsets refer to it.
    pub stream_offset: u64,
    pub log_truncated: bool,
    /// Its approval, or why it was skipped (boxed: most jobs have neither).
    #[serde(default)]
    pub gate: Option<Box<Gate>>,
}

impl Job {
    pub fn fencing(&self) -> Option<FencingToken> {
        self.attempts
            .last()
            .filter(|a| a.attempt == self.attempt)
            .map(|a| a.fencing)
    }

    pub fn current_attempt_mut(&mut self) -> Option<&mut AttemptRecord> {
        let attempt = self.attempt;
        self.attempts.last_mut().filter(|a| a.attempt == attempt)
    }

    /// Whether attempt `attempt` recorded what came of its cache save.
    pub fn cache_settled(&self, attempt: u32) -> bool {
        self.attempts
            .iter()
            .rev()
            .find(|a| a.attempt == attempt)
            .and_then(|a| a.cache.as_ref())
            .is_some_and(|c| c.saved.is_some())
    }

    /// Attempts left after the current one.
    pub fn retries_left(&self) -> u32 {
        (self.spec.retry.max_retries + 1).saturating_sub(self.attempt)
    }
}
