//! What a re-run submits: the spec of a settled pipeline again, whole or only its jobs that
//! did not succeed and everything that depends on them. Pure, so the choice of jobs is tested
//! as data; the node reads the settled records (live or archived) and submits the result with
//! `rerun_of`, which links the runs.

use crate::{Job, JobId, JobState, Pipeline, PipelineSpec};
use std::collections::BTreeSet;

/// Which jobs a re-run runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RerunScope {
    /// Every job, as first submitted (after matrix expansion).
    All,
    /// The jobs that did not succeed (nor were skipped), and every job that needs one of
    /// them (transitively); their needs on jobs left out are dropped (those succeeded: a job
    /// that needs a skipped one is skipped itself).
    Failed,
}

/// Why a pipeline cannot be re-run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RerunError {
    #[error("pipeline {0} is still running: cancel it, or wait until it settles")]
    StillRunning(crate::PipelineId),
    #[error("every job of pipeline {0} succeeded: nothing failed to run again")]
    NothingFailed(crate::PipelineId),
}

/// The spec that re-runs `pipeline`, whose jobs (in its order) are `jobs`.
pub fn rerun_spec(pipeline: &Pipeline, jobs: &[&Job], scope: RerunScope) -> Result<PipelineSpec, RerunError> {
    if !pipeline.state.is_terminal() {
        return Err(RerunError::StillRunning(pipeline.id));
    }
    let chosen: BTreeSet<JobId> = match scope {
        RerunScope::All => jobs.iter().map(|j| j.id).collect(),
        RerunScope::Failed => {
            let mut chosen: BTreeSet<JobId> = BTreeSet::new();
            let mut todo: Vec<JobId> = jobs
                .iter()
                .filter(|j| !matches!(j.state, JobState::Succeeded | JobState::Skipped))
                .map(|j| j.id)
                .collect();
            // Each job enters once; the walk is bounded by the pipeline's jobs.
            while let Some(id) = todo.pop() {
                if chosen.insert(id)
                    && let Some(job) = jobs.iter().find(|j| j.id == id)
                {
                    todo.extend(job.dependants.iter().copied());
                }
            }
            chosen
        }
    };
    if chosen.is_empty() {
        return Err(RerunError::NothingFailed(pipeline.id));
    }
    let names: BTreeSet<&str> = jobs
        .iter()
        .filter(|j| chosen.contains(&j.id))
        .map(|j| j.spec.name.as_str())
        .collect();
    let specs = jobs
        .iter()
        .filter(|j| chosen.contains(&j.id))
        .map(|j| {
            let mut spec = j.spec.clone();
            spec.needs.retain(|n| names.contains(n.as_str()));
            spec
        })
        .collect();
    Ok(PipelineSpec {
        name: pipeline.name.clone(),
        jobs: specs,
    })
}
