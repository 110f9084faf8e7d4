//! Commit statuses owed to forges: when a pipeline from a repository that can report starts
//! and when it settles, `apply` records the state its commit should show; the leader posts
//! it to the forge and commits `StatusReported`, which clears the entry if the state it
//! reported is still the one owed. So every status is reported at least once, the last one
//! reported is the pipeline's final state, and a new leader picks up what the old one left.
//! The outbox is bounded: past `MAX_STATUSES_DUE` the oldest owed status is given up.

use crate::{PipelineId, PipelineState, Repository, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most statuses owed at once (a forge down for long holds them here).
pub const MAX_STATUSES_DUE: usize = 10_000;

/// The status one pipeline's commit should show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDue {
    pub tenant: String,
    pub repository: String,
    pub commit: String,
    /// The pipeline's name: the status's context is `flotilla/<name>`.
    pub name: String,
    pub state: PipelineState,
}

/// The statuses owed, by pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusOutbox {
    due: BTreeMap<PipelineId, StatusDue>,
    /// Statuses given up because the outbox was full.
    pub dropped: u64,
}

impl StatusOutbox {
    /// Owes `state` for `pipeline` from `source`, if its repository reports statuses (a forge
    /// with an API, and a token to post with).
    pub(crate) fn owe(
        &mut self,
        pipeline: PipelineId,
        name: &str,
        tenant: &str,
        source: &Source,
        repo: Option<&Repository>,
        state: PipelineState,
    ) {
        if !repo.is_some_and(|r| r.spec.reports_statuses()) {
            return;
        }
        if !self.due.contains_key(&pipeline) && self.due.len() >= MAX_STATUSES_DUE {
            // Pipeline ids grow with time: the first key is the oldest owed.
            if self.due.pop_first().is_some() {
                self.dropped += 1;
            }
        }
        self.due.insert(
            pipeline,
            StatusDue {
                tenant: tenant.to_string(),
                repository: source.repository.clone(),
                commit: source.commit.clone(),
                name: name.to_string(),
                state,
            },
        );
    }

    /// Clears what `pipeline` owes if `state` is what it owes; returns whether it did.
    pub(crate) fn reported(&mut self, pipeline: PipelineId, state: PipelineState) -> bool {
        match self.due.get(&pipeline) {
            Some(d) if d.state == state => {
                self.due.remove(&pipeline);
                true
            }
            _ => false,
        }
    }

    /// Up to `max` owed statuses after `after`, in pipeline order.
    pub fn due_after(&self, after: Option<PipelineId>, max: usize) -> impl Iterator<Item = (PipelineId, &StatusDue)> {
        let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        self.due
            .range((start, std::ops::Bound::Unbounded))
            .take(max)
            .map(|(id, d)| (*id, d))
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}
