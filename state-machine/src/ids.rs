//! Identifiers of replicated objects.
//!
//! Ids are assigned by `apply` from counters inside the replicated state, so every replica
//! assigns the same id to the same object without any clock or randomness.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies a pipeline; assigned in submission order, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PipelineId(pub u64);

/// Identifies a job across the whole cluster; assigned in submission order, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "j{}", self.0)
    }
}
