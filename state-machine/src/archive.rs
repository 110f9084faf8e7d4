//! Settled pipelines as compact records: what the in-memory state keeps of a pipeline whose
//! full record, and its jobs', went to disk (`DiskWrite::Archive`).
//!
//! A settled pipeline (finished, no worker left) is never scheduled or driven again; the
//! state needs of it only what retention and the answers of `apply` need: its tenant (a
//! number, `tenant_names.rs`), when it finished, its jobs' ids (contiguous, given at
//! submission) and how much output they hold. About 56 bytes a pipeline (its id and this
//! record, in full blocks: `packed/`) instead of the whole record and every job's; reads of
//! the records go to the node's store by key.

use crate::PackedMap;
use crate::tenant_names::{TenantNames, TenantNo};
use crate::{JobId, JobState, PipelineId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the state keeps of one archived pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedPipeline {
    tenant: TenantNo,
    pub finished_at_ms: u64,
    /// Its first job; its jobs are `first_job .. first_job + jobs`.
    pub first_job: JobId,
    pub jobs: u32,
    /// How many of them succeeded, failed and were skipped; the rest were cancelled.
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    /// Output its jobs hold (0 once retention removed it).
    pub output_bytes: u64,
}

impl ArchivedPipeline {
    /// Its jobs by final state (the states a settled pipeline's jobs end in).
    pub fn job_counts(&self) -> [(JobState, u64); 4] {
        let (s, f, k) = (
            u64::from(self.succeeded),
            u64::from(self.failed),
            u64::from(self.skipped),
        );
        [
            (JobState::Succeeded, s),
            (JobState::Failed, f),
            (JobState::Skipped, k),
            (JobState::Cancelled, u64::from(self.jobs).saturating_sub(s + f + k)),
        ]
    }

    /// Its jobs' ids, in order.
    pub fn job_ids(&self) -> impl Iterator<Item = JobId> + use<> {
        let first = self.first_job.0;
        (first..first.saturating_add(u64::from(self.jobs))).map(JobId)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archive {
    /// Packed (`packed/`): they arrive in about id order, and a million of them are common.
    pipelines: PackedMap<PipelineId, ArchivedPipeline>,
    tenants: TenantNames,
    /// Jobs of the archived pipelines, in all, and by final state.
    jobs: u64,
    job_counts: BTreeMap<JobState, u64>,
}

impl Archive {
    pub fn get(&self, id: PipelineId) -> Option<&ArchivedPipeline> {
        self.pipelines.get(&id)
    }

    pub fn contains(&self, id: PipelineId) -> bool {
        self.pipelines.contains_key(&id)
    }

    /// The tenant of archived pipeline `id`.
    pub fn tenant_of(&self, id: PipelineId) -> Option<&str> {
        self.pipelines.get(&id).and_then(|a| self.tenants.name(a.tenant))
    }

    /// How many pipelines are archived, and how many jobs they hold.
    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }

    pub fn jobs(&self) -> u64 {
        self.jobs
    }

    /// Archived jobs by final state (states with none are absent).
    pub fn job_counts(&self) -> &BTreeMap<JobState, u64> {
        &self.job_counts
    }

    fn count(&mut self, a: &ArchivedPipeline, added: bool) {
        for (state, n) in a.job_counts() {
            let c = self.job_counts.entry(state).or_default();
            *c = if added {
                c.saturating_add(n)
            } else {
                c.saturating_sub(n)
            };
            if *c == 0 {
                self.job_counts.remove(&state);
            }
        }
    }

    /// Every archived pipeline, by id.
    pub fn iter(&self) -> impl Iterator<Item = (PipelineId, &ArchivedPipeline)> {
        self.pipelines.iter().map(|(id, a)| (*id, a))
    }

    pub(crate) fn insert(&mut self, id: PipelineId, tenant: &str, record: NewArchived) {
        let tenant = self.tenants.acquire(tenant);
        self.jobs += u64::from(record.jobs);
        let archived = ArchivedPipeline {
            tenant,
            finished_at_ms: record.finished_at_ms,
            first_job: record.first_job,
            jobs: record.jobs,
            succeeded: record.succeeded,
            failed: record.failed,
            skipped: record.skipped,
            output_bytes: record.output_bytes,
        };
        self.count(&archived, true);
        let previous = self.pipelines.insert(id, archived);
        debug_assert!(previous.is_none(), "pipeline {id} archived twice");
    }

    /// Takes `id` out, with its tenant's name.
    pub(crate) fn remove(&mut self, id: PipelineId) -> Option<(String, ArchivedPipeline)> {
        let a = self.pipelines.remove(&id)?;
        let tenant = self.tenants.name(a.tenant).unwrap_or_default().to_string();
        self.tenants.release(&tenant);
        self.jobs = self.jobs.saturating_sub(u64::from(a.jobs));
        self.count(&a, false);
        Some((tenant, a))
    }

    /// Records that `id`'s output is gone; returns the bytes it held.
    pub(crate) fn output_removed(&mut self, id: PipelineId) -> u64 {
        self.pipelines
            .get_mut(&id)
            .map_or(0, |a| std::mem::take(&mut a.output_bytes))
    }

    /// Whether the records hold together (an invariant): laid out as a packed map must be,
    /// each record's tenant named, and each name used by as many records as it counts.
    pub(crate) fn consistent(&self) -> bool {
        let mut uses: BTreeMap<&str, u64> = BTreeMap::new();
        for a in self.pipelines.values() {
            let Some(name) = self.tenants.name(a.tenant) else {
                return false;
            };
            *uses.entry(name).or_default() += 1;
        }
        let jobs: u64 = self.pipelines.values().map(|a| u64::from(a.jobs)).sum();
        let mut counts: BTreeMap<JobState, u64> = BTreeMap::new();
        for (state, n) in self.pipelines.values().flat_map(|a| a.job_counts()) {
            if n > 0 {
                *counts.entry(state).or_default() += n;
            }
        }
        self.pipelines.well_formed()
            && self.tenants.consistent()
            && jobs == self.jobs
            && counts == self.job_counts
            && self
                .pipelines
                .values()
                .all(|a| a.succeeded.saturating_add(a.failed).saturating_add(a.skipped) <= a.jobs)
            && self.tenants.names().count() == uses.len()
            && uses.iter().all(|(name, n)| self.tenants.uses(name) == *n)
    }
}

/// The facts of a pipeline being archived.
pub(crate) struct NewArchived {
    pub finished_at_ms: u64,
    pub first_job: JobId,
    pub jobs: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    pub output_bytes: u64,
}
