//! The placement of one attempt of a job on a pool, and the fencing token that guards it.

use crate::{JobId, Resources};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Raft term and log index of the entry that created an assignment. Unique per assignment and
/// increasing over time; every worker report must carry the token of the live assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken {
    pub term: u64,
    pub log_index: u64,
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.term, self.log_index)
    }
}

/// Holds pool capacity from placement until the worker is confirmed gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub job: JobId,
    pub attempt: u32,
    pub pool: CompactString,
    pub tenant: CompactString,
    pub resources: Resources,
    pub fencing: FencingToken,
    /// Provider's id of the worker once it exists (container id, pid, pod uid).
    pub worker_id: Option<CompactString>,
    /// Set when the job no longer wants the worker (cancel, timeout, loss); the capacity is
    /// released once the worker is confirmed gone.
    pub releasing: bool,
    pub created_at_ms: u64,
    /// The host the worker lives on, if only one host can see it (`Placement::worker_host`).
    #[serde(default)]
    pub worker_host: Option<String>,
}
