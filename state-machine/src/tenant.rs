//! Tenants and their quotas. A tenant without a quota is unlimited: any resources, any
//! number of running jobs, any priority the limits allow.

use crate::Resources;
use serde::{Deserialize, Serialize};

/// Most tenants a quota may be set for: past it, setting the quota of a tenant the state does
/// not know yet is refused (each call would otherwise add one for good).
pub const MAX_QUOTA_TENANTS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub resources: Resources,
    pub max_running_jobs: u32,
    /// The highest priority the tenant's jobs may ask for; a submission asking more is
    /// refused. `None`: as high as the limits allow (`Limits::max_priority_abs`).
    pub max_priority: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub quota: Option<Quota>,
    /// Resources of the tenant's live assignments (releasing ones included, as in pools).
    pub allocated: Resources,
    /// Number of the tenant's live assignments.
    pub running_jobs: u32,
}

impl Quota {
    /// Whether one more job with `req` fits, given what is already `allocated` to `running` jobs.
    pub fn admits(&self, allocated: &Resources, running: u32, req: &Resources) -> bool {
        running < self.max_running_jobs
            && allocated
                .checked_add(req)
                .is_some_and(|sum| sum.fits_within(&self.resources))
    }
}

impl Tenant {
    /// Whether one more job with `req` stays within the quota.
    pub fn admits(&self, req: &Resources) -> bool {
        self.quota
            .as_ref()
            .is_none_or(|q| q.admits(&self.allocated, self.running_jobs, req))
    }
}
