//! Retention: what finished work the state keeps, and the record of what it let go.
//!
//! `Retention` lives in the replicated state. It holds the policies (a cluster default and
//! one per tenant), the settled pipelines of each tenant in the order they finished (the
//! candidates for removal, `settled.rs`), the most recent removals (so a read of a removed
//! pipeline can say when it went) and running totals. `due.rs` is the leader's pure choice of
//! what to remove now; `apply/retention.rs` re-checks each choice against the policy at the
//! entry's time, so a stale or forged choice removes nothing that is not due.

mod due;
mod policy;
mod removal;
mod settled;

pub use due::{ExpirePlan, MAX_EXPIRE_PER_COMMAND, due};
pub use policy::{MAX_RETENTION_AGE_MS, MAX_RETENTION_TENANTS, RetentionPolicy};
pub use removal::{MAX_REMOVAL_RECORDS, Removal, RetentionTotals};
pub use settled::Settled;

use crate::PipelineId;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// The policy of every tenant without one of its own; `None`: keep everything.
    pub(crate) default: Option<RetentionPolicy>,
    pub(crate) tenants: BTreeMap<String, RetentionPolicy>,
    /// Per tenant, its settled pipelines (finished, no worker left). Tenants with none are
    /// absent.
    pub(crate) settled: OrdMap<String, Settled>,
    /// The latest whole-pipeline removals, oldest first, at most `MAX_REMOVAL_RECORDS`.
    pub(crate) removals: VecDeque<Removal>,
    pub(crate) totals: RetentionTotals,
}

impl Retention {
    /// The policy that applies to `tenant`: its own, else the default.
    pub fn policy_for(&self, tenant: &str) -> Option<&RetentionPolicy> {
        self.tenants.get(tenant).or(self.default.as_ref())
    }

    pub fn default_policy(&self) -> Option<&RetentionPolicy> {
        self.default.as_ref()
    }

    /// The tenants with a policy of their own, by name.
    pub fn tenant_policies(&self) -> impl Iterator<Item = (&str, &RetentionPolicy)> {
        self.tenants.iter().map(|(t, p)| (t.as_str(), p))
    }

    /// The settled pipelines of every tenant that has any, by tenant name.
    pub fn settled(&self) -> impl Iterator<Item = (&str, &Settled)> {
        self.settled.iter().map(|(t, s)| (t.as_str(), s))
    }

    /// The latest removals, oldest first.
    pub fn removals(&self) -> impl DoubleEndedIterator<Item = &Removal> {
        self.removals.iter()
    }

    /// The record of `pipeline`'s removal, while it is among the latest.
    pub fn removal_of(&self, pipeline: PipelineId) -> Option<&Removal> {
        self.removals.iter().rev().find(|r| r.pipeline == pipeline)
    }

    pub fn totals(&self) -> &RetentionTotals {
        &self.totals
    }

    pub(crate) fn record_removal(&mut self, removal: Removal) {
        if self.removals.len() >= MAX_REMOVAL_RECORDS {
            self.removals.pop_front();
        }
        self.removals.push_back(removal);
    }
}
