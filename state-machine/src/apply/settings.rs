//! Cluster-wide settings kept in the replicated state: tenant quotas and limits.

use super::{EntryContext, Handled};
use crate::spec::validate_name;
use crate::{Event, EventId, Limits, Quota, Rejection, Response, State};

impl State {
    pub(crate) fn set_tenant_quota(&mut self, cx: &mut EntryContext, tenant: &str, quota: Option<&Quota>) -> Handled {
        validate_name("tenant", tenant, &self.limits)?;
        if let Some(ceiling) = quota.and_then(|q| q.max_priority) {
            let max = i64::from(self.limits.max_priority_abs);
            if i64::from(ceiling).abs() > max {
                return Err(crate::SpecError::OutOfRange {
                    field: "max_priority".into(),
                    value: i64::from(ceiling),
                    min: -max,
                    max,
                }
                .into());
            }
        }
        if !self.tenants.contains_key(tenant) {
            // Lifting the quota of a tenant never seen changes nothing, and adds nothing.
            if quota.is_none() {
                return Ok(Response::Done { changed: false });
            }
            if self.tenants.len() >= crate::MAX_QUOTA_TENANTS {
                return Err(Rejection::TooManyTenants {
                    count: self.tenants.len(),
                    tenant: tenant.to_string(),
                });
            }
        }
        let t = self.tenants.entry(tenant.to_string()).or_default();
        if t.quota.as_ref() == quota {
            return Ok(Response::Done { changed: false });
        }
        // Lowering a quota below current use is allowed: running jobs finish, new ones wait.
        t.quota = quota.cloned();
        cx.emit(Event::QuotaUpdated {
            tenant: tenant.to_string(),
        });
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn update_limits(&mut self, cx: &mut EntryContext, limits: &Limits) -> Handled {
        limits.validate()?;
        if &self.limits == limits {
            return Ok(Response::Done { changed: false });
        }
        self.limits = limits.clone();
        cx.emit(Event::LimitsUpdated);
        Ok(Response::Done { changed: true })
    }

    /// Records the publisher's progress. A lower or equal mark (a deposed leader's late report)
    /// changes nothing; it is not an error, as the mark is only ever a lower bound.
    pub(crate) fn record_events_published(&mut self, through: EventId) -> Response {
        if self.events_published_through.is_some_and(|current| current >= through) {
            return Response::Done { changed: false };
        }
        self.events_published_through = Some(through);
        Response::Done { changed: true }
    }
}
