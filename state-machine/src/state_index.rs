//! Secondary indexes of the replicated state, kept as entries apply, so that reads cost what
//! they return: a page of the jobs in one state is a range read, not a scan of every job, and
//! the count of jobs in each state (a `/metrics` gauge) is a lookup.
//!
//! Derived data, but kept in the state (and its snapshots) rather than rebuilt: every replica
//! maintains it in `apply` at the same indexes, and `check_invariants` compares it with the
//! records it indexes.

use crate::{JobId, JobState, PipelineId, PipelineState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateIndex {
    jobs: BTreeSet<(JobState, JobId)>,
    pipelines: BTreeSet<(PipelineState, PipelineId)>,
    job_counts: BTreeMap<JobState, u64>,
}

impl StateIndex {
    pub(crate) fn job_added(&mut self, state: JobState, job: JobId) {
        if self.jobs.insert((state, job)) {
            *self.job_counts.entry(state).or_default() += 1;
        }
    }

    pub(crate) fn job_moved(&mut self, from: JobState, to: JobState, job: JobId) {
        if from == to {
            return;
        }
        self.job_removed(from, job);
        self.job_added(to, job);
    }

    /// Forgets a job removed by retention.
    pub(crate) fn job_removed(&mut self, state: JobState, job: JobId) {
        if self.jobs.remove(&(state, job))
            && let Some(n) = self.job_counts.get_mut(&state)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.job_counts.remove(&state);
            }
        }
    }

    /// Forgets a pipeline removed by retention.
    pub(crate) fn pipeline_removed(&mut self, state: PipelineState, pipeline: PipelineId) {
        self.pipelines.remove(&(state, pipeline));
    }

    pub(crate) fn pipeline_added(&mut self, state: PipelineState, pipeline: PipelineId) {
        self.pipelines.insert((state, pipeline));
    }

    pub(crate) fn pipeline_moved(&mut self, from: PipelineState, to: PipelineState, pipeline: PipelineId) {
        self.pipelines.remove(&(from, pipeline));
        self.pipelines.insert((to, pipeline));
    }

    /// Jobs in `state` with an id greater than `after`, in id order.
    pub fn jobs_in(&self, state: JobState, after: JobId) -> impl Iterator<Item = JobId> + '_ {
        self.jobs
            .range((
                Bound::Excluded((state, after)),
                Bound::Included((state, JobId(u64::MAX))),
            ))
            .map(|(_, j)| *j)
    }

    /// Pipelines in `state` with an id greater than `after`, in id order.
    pub fn pipelines_in(&self, state: PipelineState, after: PipelineId) -> impl Iterator<Item = PipelineId> + '_ {
        self.pipelines
            .range((
                Bound::Excluded((state, after)),
                Bound::Included((state, PipelineId(u64::MAX))),
            ))
            .map(|(_, p)| *p)
    }

    /// How many jobs are in each state (states with none are absent).
    pub fn job_counts(&self) -> &BTreeMap<JobState, u64> {
        &self.job_counts
    }

    /// Every indexed job, for the invariant check.
    pub(crate) fn indexed_jobs(&self) -> impl Iterator<Item = (JobState, JobId)> + '_ {
        self.jobs.iter().copied()
    }

    /// Every indexed pipeline, for the invariant check.
    pub(crate) fn indexed_pipelines(&self) -> impl Iterator<Item = (PipelineState, PipelineId)> + '_ {
        self.pipelines.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_counts_follow_moves() {
        let mut ix = StateIndex::default();
        for id in 1..=5 {
            ix.job_added(JobState::Pending, JobId(id));
        }
        ix.job_moved(JobState::Pending, JobState::Running, JobId(2));
        ix.job_moved(JobState::Pending, JobState::Running, JobId(4));
        assert_eq!(
            ix.jobs_in(JobState::Pending, JobId(0)).collect::<Vec<_>>(),
            vec![JobId(1), JobId(3), JobId(5)]
        );
        assert_eq!(
            ix.jobs_in(JobState::Pending, JobId(3)).collect::<Vec<_>>(),
            vec![JobId(5)]
        );
        assert_eq!(
            ix.jobs_in(JobState::Running, JobId(0)).collect::<Vec<_>>(),
            vec![JobId(2), JobId(4)]
        );
        assert_eq!(ix.job_counts().get(&JobState::Pending), Some(&3));
        assert_eq!(ix.job_counts().get(&JobState::Running), Some(&2));
        ix.job_moved(JobState::Running, JobState::Succeeded, JobId(2));
        ix.job_moved(JobState::Running, JobState::Succeeded, JobId(4));
        assert_eq!(ix.job_counts().get(&JobState::Running), None);
        ix.pipeline_added(PipelineState::Running, PipelineId(1));
        ix.pipeline_moved(PipelineState::Running, PipelineState::Failed, PipelineId(1));
        assert_eq!(
            ix.pipelines_in(PipelineState::Failed, PipelineId(0))
                .collect::<Vec<_>>(),
            vec![PipelineId(1)]
        );
        assert_eq!(ix.pipelines_in(PipelineState::Running, PipelineId(0)).count(), 0);
    }
}
