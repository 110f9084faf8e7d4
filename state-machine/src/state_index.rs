//! Secondary indexes of the replicated state, kept as entries apply, so that reads cost what
//! they return: a page of the jobs in one state, or of one tenant's pipelines, is a range read,
//! not a scan of every job, and the count of jobs in each state (a `/metrics` gauge) is a
//! lookup.
//!
//! Derived data, but kept in the state (and its snapshots) rather than rebuilt: every replica
//! maintains it in `apply` at the same indexes, and `check_invariants` compares it with the
//! records it indexes.
//!
//! The tenant indexes key by `(tenant, state, id)`. A page of several tenants in every state is
//! one range per tenant and state, each of at most a page, merged: still the page's cost (times
//! the tenants asked for), without a second set per kind. Tenant names are interned
//! (`TenantNames`): an entry holds a number, not a copy of the name.

use crate::{JobId, JobState, PipelineId, PipelineState};
use imbl::OrdSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::tenant_names::{TenantNames, TenantNo};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateIndex {
    jobs: OrdSet<(JobState, JobId)>,
    pipelines: OrdSet<(PipelineState, PipelineId)>,
    job_counts: BTreeMap<JobState, u64>,
    tenant_names: TenantNames,
    tenant_jobs: OrdSet<(TenantNo, JobState, JobId)>,
    tenant_pipelines: OrdSet<(TenantNo, PipelineState, PipelineId)>,
}

/// Up to `limit` ids of `set` under any of `tenants` in any of `states` and past `after`, in id
/// order: one range per tenant and state, each of at most `limit`, merged.
fn first_of_tenants<S: Ord + Copy, I: Ord + Copy>(
    set: &OrdSet<(TenantNo, S, I)>,
    tenants: &[TenantNo],
    states: &[S],
    after: I,
    last: I,
    limit: usize,
) -> Vec<I> {
    let mut ids: Vec<I> = tenants
        .iter()
        .flat_map(|tenant| states.iter().map(move |state| (*tenant, *state)))
        .flat_map(|(tenant, state)| {
            set.range((
                Bound::Excluded((tenant, state, after)),
                Bound::Included((tenant, state, last)),
            ))
            .take(limit)
            .map(|(_, _, id)| *id)
        })
        .collect();
    ids.sort_unstable();
    ids.truncate(limit);
    ids
}

impl StateIndex {
    pub(crate) fn job_added(&mut self, tenant: &str, state: JobState, job: JobId) {
        if self.jobs.insert((state, job)).is_none() {
            *self.job_counts.entry(state).or_default() += 1;
            let no = self.tenant_names.acquire(tenant);
            self.tenant_jobs.insert((no, state, job));
        }
    }

    pub(crate) fn job_moved(&mut self, tenant: &str, from: JobState, to: JobState, job: JobId) {
        if from == to {
            return;
        }
        self.job_removed(tenant, from, job);
        self.job_added(tenant, to, job);
    }

    /// Forgets a job removed by retention.
    pub(crate) fn job_removed(&mut self, tenant: &str, state: JobState, job: JobId) {
        if self.jobs.remove(&(state, job)).is_some() {
            if let Some(n) = self.job_counts.get_mut(&state) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.job_counts.remove(&state);
                }
            }
            if let Some(no) = self.tenant_names.get(tenant) {
                self.tenant_jobs.remove(&(no, state, job));
                self.tenant_names.release(tenant);
            }
        }
    }

    /// Forgets a pipeline removed by retention.
    pub(crate) fn pipeline_removed(&mut self, tenant: &str, state: PipelineState, pipeline: PipelineId) {
        if self.pipelines.remove(&(state, pipeline)).is_some()
            && let Some(no) = self.tenant_names.get(tenant)
        {
            self.tenant_pipelines.remove(&(no, state, pipeline));
            self.tenant_names.release(tenant);
        }
    }

    pub(crate) fn pipeline_added(&mut self, tenant: &str, state: PipelineState, pipeline: PipelineId) {
        if self.pipelines.insert((state, pipeline)).is_none() {
            let no = self.tenant_names.acquire(tenant);
            self.tenant_pipelines.insert((no, state, pipeline));
        }
    }

    pub(crate) fn pipeline_moved(
        &mut self,
        tenant: &str,
        from: PipelineState,
        to: PipelineState,
        pipeline: PipelineId,
    ) {
        if from == to {
            return;
        }
        self.pipeline_removed(tenant, from, pipeline);
        self.pipeline_added(tenant, to, pipeline);
    }

    /// Up to `limit` jobs of `tenants` (in `state`, or in any) with an id greater than `after`,
    /// in id order.
    pub fn tenant_jobs(&self, tenants: &[&str], state: Option<JobState>, after: JobId, limit: usize) -> Vec<JobId> {
        let one = state.map(|s| [s]);
        let states: &[JobState] = one.as_ref().map_or(&JobState::ALL, |s| s.as_slice());
        first_of_tenants(
            &self.tenant_jobs,
            &self.numbers(tenants),
            states,
            after,
            JobId(u64::MAX),
            limit,
        )
    }

    /// Up to `limit` pipelines of `tenants` (in `state`, or in any) with an id greater than
    /// `after`, in id order.
    pub fn tenant_pipelines(
        &self,
        tenants: &[&str],
        state: Option<PipelineState>,
        after: PipelineId,
        limit: usize,
    ) -> Vec<PipelineId> {
        let one = state.map(|s| [s]);
        let states: &[PipelineState] = one.as_ref().map_or(&PipelineState::ALL, |s| s.as_slice());
        first_of_tenants(
            &self.tenant_pipelines,
            &self.numbers(tenants),
            states,
            after,
            PipelineId(u64::MAX),
            limit,
        )
    }

    /// The numbers of those of `tenants` the index knows.
    fn numbers(&self, tenants: &[&str]) -> Vec<TenantNo> {
        tenants.iter().filter_map(|t| self.tenant_names.get(t)).collect()
    }

    /// Whether the tenant index holds `job` of `tenant` in `state`, for the invariant check.
    pub(crate) fn holds_tenant_job(&self, tenant: &str, state: JobState, job: JobId) -> bool {
        self.tenant_names
            .get(tenant)
            .is_some_and(|no| self.tenant_jobs.contains(&(no, state, job)))
    }

    /// Whether the tenant index holds `pipeline` of `tenant` in `state`, for the invariant check.
    pub(crate) fn holds_tenant_pipeline(&self, tenant: &str, state: PipelineState, pipeline: PipelineId) -> bool {
        self.tenant_names
            .get(tenant)
            .is_some_and(|no| self.tenant_pipelines.contains(&(no, state, pipeline)))
    }

    /// How many records the index counts for `tenant`, for the invariant check.
    pub(crate) fn tenant_uses(&self, tenant: &str) -> u64 {
        self.tenant_names.uses(tenant)
    }

    /// Tenant names in the index, for the invariant check.
    pub(crate) fn tenant_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tenant_names.names()
    }

    /// Entries of the tenant indexes, for the invariant check (each must have a name).
    pub(crate) fn tenant_entries(&self) -> usize {
        self.tenant_jobs.len() + self.tenant_pipelines.len()
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
            ix.job_added("t", JobState::Pending, JobId(id));
        }
        ix.job_moved("t", JobState::Pending, JobState::Running, JobId(2));
        ix.job_moved("t", JobState::Pending, JobState::Running, JobId(4));
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
        ix.job_moved("t", JobState::Running, JobState::Succeeded, JobId(2));
        ix.job_moved("t", JobState::Running, JobState::Succeeded, JobId(4));
        assert_eq!(ix.job_counts().get(&JobState::Running), None);
        ix.pipeline_added("t", PipelineState::Running, PipelineId(1));
        ix.pipeline_moved("t", PipelineState::Running, PipelineState::Failed, PipelineId(1));
        assert_eq!(
            ix.pipelines_in(PipelineState::Failed, PipelineId(0))
                .collect::<Vec<_>>(),
            vec![PipelineId(1)]
        );
        assert_eq!(ix.pipelines_in(PipelineState::Running, PipelineId(0)).count(), 0);
    }

    #[test]
    fn a_tenant_page_merges_its_states_in_id_order_and_reads_no_other_tenant() {
        let mut ix = StateIndex::default();
        // Tenants interleaved by id; web's jobs spread over three states.
        for id in 1..=30u64 {
            let tenant = if id % 3 == 0 { "ml" } else { "web" };
            ix.job_added(tenant, JobState::Pending, JobId(id));
        }
        for id in [1u64, 5, 10, 20] {
            ix.job_moved("web", JobState::Pending, JobState::Running, JobId(id));
        }
        for id in [2u64, 7] {
            ix.job_moved("web", JobState::Pending, JobState::Succeeded, JobId(id));
        }
        let web = |after: u64, limit: usize| ix.tenant_jobs(&["web"], None, JobId(after), limit);
        assert_eq!(web(0, 5), vec![JobId(1), JobId(2), JobId(4), JobId(5), JobId(7)]);
        assert_eq!(web(7, 3), vec![JobId(8), JobId(10), JobId(11)]);
        assert_eq!(web(29, 10), Vec::<JobId>::new());
        assert_eq!(
            ix.tenant_jobs(&["web"], Some(JobState::Running), JobId(1), 10),
            vec![JobId(5), JobId(10), JobId(20)]
        );
        assert_eq!(
            ix.tenant_jobs(&["ml"], None, JobId(0), 3),
            vec![JobId(3), JobId(6), JobId(9)]
        );
        assert!(ix.tenant_jobs(&["nobody"], None, JobId(0), 10).is_empty());
        // Several tenants: their pages merged in id order, one unknown tenant ignored.
        assert_eq!(
            ix.tenant_jobs(&["ml", "web", "nobody"], None, JobId(0), 5),
            vec![JobId(1), JobId(2), JobId(3), JobId(4), JobId(5)]
        );
        assert_eq!(
            ix.tenant_jobs(&["ml", "web"], Some(JobState::Pending), JobId(20), 4),
            vec![JobId(21), JobId(22), JobId(23), JobId(24)]
        );
        // Every web job, page by page, is every web job once.
        let (mut after, mut seen) = (0u64, Vec::new());
        for _ in 0..30 {
            let page = web(after, 4);
            let Some(last) = page.last() else { break };
            after = last.0;
            seen.extend(page);
        }
        let expected: Vec<JobId> = (1..=30).filter(|i| i % 3 != 0).map(JobId).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_tenant_name_goes_with_its_last_record_and_numbers_are_not_reused() {
        let mut ix = StateIndex::default();
        ix.pipeline_added("a", PipelineState::Running, PipelineId(1));
        ix.job_added("a", JobState::Pending, JobId(2));
        ix.pipeline_added("b", PipelineState::Running, PipelineId(3));
        assert_eq!(ix.tenant_uses("a"), 2);
        ix.job_removed("a", JobState::Pending, JobId(2));
        ix.pipeline_removed("a", PipelineState::Running, PipelineId(1));
        assert_eq!(ix.tenant_uses("a"), 0);
        assert_eq!(ix.tenant_names().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(ix.tenant_entries(), 1);
        // A tenant seen again gets a new number; its old entries are gone with the old one.
        ix.pipeline_added("a", PipelineState::Running, PipelineId(4));
        assert_eq!(
            ix.tenant_pipelines(&["a"], None, PipelineId(0), 10),
            vec![PipelineId(4)]
        );
        assert_eq!(
            ix.tenant_pipelines(&["b"], Some(PipelineState::Running), PipelineId(0), 10),
            vec![PipelineId(3)]
        );
    }
}
