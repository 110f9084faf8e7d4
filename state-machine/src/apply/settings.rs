//! Cluster-wide settings kept in the replicated state: tenant quotas and limits.

use super::{Cx, Handled};
use crate::spec::validate_name;
use crate::{Event, EventId, Limits, Quota, Response, SpecError, State};

impl State {
    pub(crate) fn set_tenant_quota(&mut self, cx: &mut Cx, tenant: &str, quota: Option<&Quota>) -> Handled {
        validate_name("tenant", tenant, &self.limits)?;
        let t = self.tenants.entry(tenant.to_string()).or_default();
        if t.quota.as_ref() == quota {
            return Ok(Response::Done { changed: false });
        }
        // Lowering a quota below current use is allowed: running jobs finish, new ones wait.
        t.quota = quota.cloned();
        cx.emit(Event::QuotaUpdated { tenant: tenant.to_string() });
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn update_limits(&mut self, cx: &mut Cx, limits: &Limits) -> Handled {
        let zero = [
            ("max_name_bytes", limits.max_name_bytes as u64),
            ("max_value_bytes", limits.max_value_bytes as u64),
            ("max_jobs_per_pipeline", limits.max_jobs_per_pipeline as u64),
            ("max_steps_per_job", limits.max_steps_per_job as u64),
            ("max_step_bytes", limits.max_step_bytes as u64),
            ("max_timeout_ms", limits.max_timeout_ms),
            ("max_log_chunk_bytes", limits.max_log_chunk_bytes as u64),
            ("max_idempotency_key_bytes", limits.max_idempotency_key_bytes as u64),
            ("max_pools", limits.max_pools as u64),
            ("max_plan_placements", limits.max_plan_placements as u64),
        ];
        if let Some((field, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(SpecError::Zero { field: format!("limits.{field}") }.into());
        }
        if limits.max_priority_abs < 0 {
            let value = i64::from(limits.max_priority_abs);
            return Err(SpecError::OutOfRange { field: "limits.max_priority_abs".into(), value, min: 0, max: i64::from(i32::MAX) }.into());
        }
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
