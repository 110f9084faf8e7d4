//! The record retention keeps of what it removed: the latest removals one by one, and totals.

use crate::PipelineId;
use serde::{Deserialize, Serialize};

/// Most removals remembered one by one; older ones count only in the totals.
pub const MAX_REMOVAL_RECORDS: usize = 10_000;

/// One pipeline removed with its jobs and output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub pipeline: PipelineId,
    pub tenant: String,
    /// The state's time of the entry that removed it.
    pub removed_at_ms: u64,
    pub finished_at_ms: u64,
    pub jobs: u32,
}

/// What retention removed since the cluster began.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionTotals {
    pub pipelines_removed: u64,
    pub jobs_removed: u64,
    /// Pipelines whose output alone was removed (the pipeline stayed).
    pub outputs_removed: u64,
    /// Bytes of job output removed, alone or with its pipeline.
    pub output_bytes_removed: u64,
}
