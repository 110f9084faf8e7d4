//! What `apply` answers to the proposer of a command.

use crate::{FencingToken, JobId, PipelineId, Rejection, TokenId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub name: String,
    pub id: JobId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedPlacement {
    pub job: JobId,
    pub attempt: u32,
    pub pool: String,
    pub fencing: FencingToken,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedPlacement {
    pub job: JobId,
    pub reason: Rejection,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `duplicate` is true when an earlier submission with the same idempotency key is returned.
    Submitted {
        pipeline: PipelineId,
        jobs: Vec<JobRef>,
        duplicate: bool,
    },
    /// The jobs this command moved to CANCELLED. A job cancel of a job already cancelled lists
    /// that job (the answer a retried cancel must give); a pipeline cancel lists only what it
    /// moved.
    Cancelled {
        jobs: Vec<JobId>,
    },
    /// A manual job approved, and by whom (the first approval, for a repeated one).
    Approved {
        job: JobId,
        by: String,
    },
    PlanApplied {
        accepted: Vec<AcceptedPlacement>,
        rejected: Vec<RejectedPlacement>,
    },
    /// Applied; `changed` is false when the command repeated a change already made.
    Done {
        changed: bool,
    },
    Rejected(Rejection),
    /// One response per command of a `Command::Batch`, in order.
    Batch {
        responses: Vec<Response>,
    },
    TokenCreated {
        id: TokenId,
    },
    /// A join token was recorded; it is refused from `expires_at_ms` on.
    JoinTokenCreated {
        expires_at_ms: u64,
    },
    /// A secret's value was stored as `version`.
    SecretSet {
        version: u64,
    },
}

impl Response {
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Response::Rejected(r) => Some(r),
            _ => None,
        }
    }
}
