//! One tenant's settled pipelines, the candidates for removal, in the order they finished.
//!
//! A pipeline settles when it is finished and none of its jobs has a worker left (a cancelled
//! job's worker can outlive its pipeline, and its assignment holds capacity and may still
//! send output until it is gone). Only settled pipelines are ever removed, so a removal never
//! touches a live assignment.

use crate::PackedSet;
use crate::PipelineId;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    /// Every settled pipeline, by `(finished_at_ms, id)`.
    pub(crate) pipelines: PackedSet<(u64, PipelineId)>,
    /// Those of them whose jobs still hold output.
    pub(crate) with_output: PackedSet<(u64, PipelineId)>,
}

impl Settled {
    /// Settled pipelines, oldest first.
    pub fn pipelines(&self) -> impl DoubleEndedIterator<Item = (u64, PipelineId)> + '_ {
        self.pipelines.iter().copied()
    }

    /// Settled pipelines still holding output, oldest first.
    pub fn with_output(&self) -> impl DoubleEndedIterator<Item = (u64, PipelineId)> + '_ {
        self.with_output.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }
}
