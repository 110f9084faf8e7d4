//! A pipeline as submitted: a name and a DAG of jobs.

use super::JobSpec;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    pub jobs: Vec<JobSpec>,
}

impl PipelineSpec {
    /// Whether a pipeline named `name` whose jobs have the specs `jobs` (in order, after
    /// matrix expansion) is what this spec, expanded, submits: how a repeated idempotency key
    /// is told from a reused one.
    pub fn is_submitted_as<'a>(&self, name: &str, jobs: impl ExactSizeIterator<Item = &'a JobSpec>) -> bool {
        self.name == name && self.jobs.len() == jobs.len() && jobs.zip(&self.jobs).all(|(a, b)| a == b)
    }
}
