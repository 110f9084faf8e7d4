//! A pipeline as submitted: a name and a DAG of jobs.

use super::JobSpec;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    pub jobs: Vec<JobSpec>,
}
