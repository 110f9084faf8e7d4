//! The replicated record of a pipeline. Its state is derived from its jobs' states whenever
//! one of them ends.

use crate::{JobId, PipelineId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PipelineState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl PipelineState {
    pub const ALL: [PipelineState; 4] = [
        PipelineState::Running,
        PipelineState::Succeeded,
        PipelineState::Failed,
        PipelineState::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        self != PipelineState::Running
    }

    /// The name the API uses (`RUNNING`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Running => "RUNNING",
            PipelineState::Succeeded => "SUCCEEDED",
            PipelineState::Failed => "FAILED",
            PipelineState::Cancelled => "CANCELLED",
        }
    }
}

impl std::fmt::Display for PipelineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: PipelineId,
    pub name: String,
    pub tenant: String,
    pub idempotency_key: Option<String>,
    /// Jobs in the order of the spec.
    pub jobs: Vec<JobId>,
    pub state: PipelineState,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// When retention removed the output of the pipeline's jobs (the records stay).
    #[serde(default)]
    pub output_removed_at_ms: Option<u64>,
    /// W3C `traceparent` of the submitting request (see `Proposal::trace_parent`).
    pub trace_parent: Option<String>,
    /// The repository and commit it runs, when it came from source.
    #[serde(default)]
    pub source: Option<crate::Source>,
    /// The pipeline it runs again, if it is a re-run.
    #[serde(default)]
    pub rerun_of: Option<PipelineId>,
}
