//! `SetRetention` and `ExpireHistory`, and the settling of finished pipelines that makes them
//! candidates for removal (`retention/`).

use super::{EntryContext, Handled};
use crate::retention::{MAX_EXPIRE_PER_COMMAND, MAX_RETENTION_TENANTS, Removal, RetentionPolicy};
use crate::spec::validate_name;
use crate::{Event, PipelineId, Rejection, Response, SpecError, State};

impl State {
    /// Sets or lifts the policy of `tenant`, or the default when `tenant` is `None`.
    pub(crate) fn set_retention(
        &mut self,
        cx: &mut EntryContext,
        tenant: Option<&str>,
        policy: Option<&RetentionPolicy>,
    ) -> Handled {
        if let Some(t) = tenant {
            validate_name("tenant", t, &self.limits)?;
        }
        if let Some(p) = policy {
            p.validate()?;
        }
        let retention = &mut self.retention;
        let current = match tenant {
            None => retention.default.as_ref(),
            Some(t) => retention.tenants.get(t),
        };
        if current == policy {
            return Ok(Response::Done { changed: false });
        }
        match (tenant, policy) {
            (None, p) => retention.default = p.cloned(),
            (Some(t), None) => {
                retention.tenants.remove(t);
            }
            (Some(t), Some(p)) => {
                if !retention.tenants.contains_key(t) && retention.tenants.len() >= MAX_RETENTION_TENANTS {
                    return Err(Rejection::Invalid(SpecError::TooMany {
                        field: "tenant".into(),
                        count: retention.tenants.len() + 1,
                        max: MAX_RETENTION_TENANTS,
                    }));
                }
                retention.tenants.insert(t.to_string(), p.clone());
            }
        }
        cx.emit(Event::RetentionUpdated {
            tenant: tenant.map(str::to_string),
        });
        Ok(Response::Done { changed: true })
    }

    /// Removes each named pipeline (whole, or its output alone) that its tenant's policy makes
    /// due at this entry's time. One not due, unknown or not settled is passed over: the leader
    /// chose from a state that may be behind, and the next choice will be fresh.
    pub(crate) fn expire_history(
        &mut self,
        cx: &mut EntryContext,
        pipelines: &[PipelineId],
        outputs: &[PipelineId],
    ) -> Handled {
        let count = pipelines.len() + outputs.len();
        if count > MAX_EXPIRE_PER_COMMAND {
            return Err(Rejection::Invalid(SpecError::TooMany {
                field: "pipelines".into(),
                count,
                max: MAX_EXPIRE_PER_COMMAND,
            }));
        }
        let mut changed = false;
        for &id in pipelines {
            if self.pipeline_due(id, cx.now_ms) {
                self.remove_pipeline(cx, id);
                changed = true;
            }
        }
        for &id in outputs {
            if self.output_due(id, cx.now_ms) {
                self.remove_output(cx, id);
                changed = true;
            }
        }
        Ok(Response::Done { changed })
    }

    /// Whether `id` is settled and past its tenant's age, or the oldest of a tenant over its
    /// count.
    fn pipeline_due(&self, id: PipelineId, now_ms: u64) -> bool {
        let Some((tenant, key)) = self.settled_key(id) else {
            return false;
        };
        let (Some(policy), Some(settled)) = (self.retention.policy_for(tenant), self.retention.settled.get(tenant))
        else {
            return false;
        };
        policy.pipeline_expired(key.0, now_ms)
            || (policy.over_count(settled.len()) && settled.pipelines.first() == Some(&key))
    }

    fn output_due(&self, id: PipelineId, now_ms: u64) -> bool {
        let Some((tenant, key)) = self.settled_key(id) else {
            return false;
        };
        let holds_output = self
            .retention
            .settled
            .get(tenant)
            .is_some_and(|s| s.with_output.contains(&key));
        holds_output
            && self
                .retention
                .policy_for(tenant)
                .is_some_and(|p| p.output_expired(key.0, now_ms))
    }

    /// The tenant and settled key of `id`, if it is a settled (archived) pipeline.
    fn settled_key(&self, id: PipelineId) -> Option<(&str, (u64, PipelineId))> {
        let a = self.archive.get(id)?;
        let tenant = self.archive.tenant_of(id)?;
        let key = (a.finished_at_ms, id);
        self.retention
            .settled
            .get(tenant)
            .is_some_and(|s| s.pipelines.contains(&key))
            .then_some((tenant, key))
    }

    /// Takes a settled pipeline out of the archive with its jobs and their output.
    fn remove_pipeline(&mut self, cx: &mut EntryContext, id: PipelineId) {
        let Some((tenant, a)) = self.archive.remove(id) else {
            return;
        };
        if a.output_bytes > 0 {
            for job in a.job_ids() {
                cx.write_disk(crate::DiskWrite::RemoveOutput { job });
            }
        }
        cx.write_disk(crate::DiskWrite::Forget { pipeline: id });
        for job in a.job_ids() {
            self.drop_artifact(cx, job);
        }
        self.forget_settled(&tenant, (a.finished_at_ms, id));
        let totals = &mut self.retention.totals;
        totals.pipelines_removed += 1;
        totals.jobs_removed += u64::from(a.jobs);
        totals.output_bytes_removed += a.output_bytes;
        cx.emit(Event::PipelineRemoved {
            pipeline: id,
            tenant: tenant.clone(),
            jobs: a.jobs,
        });
        self.retention.record_removal(Removal {
            pipeline: id,
            tenant,
            removed_at_ms: cx.now_ms,
            finished_at_ms: a.finished_at_ms,
            jobs: a.jobs,
        });
    }

    /// Removes the output of a settled pipeline's jobs; the records stay, saying so.
    fn remove_output(&mut self, cx: &mut EntryContext, id: PipelineId) {
        let (Some(a), Some(tenant)) = (self.archive.get(id).copied(), self.archive.tenant_of(id)) else {
            return;
        };
        let tenant = tenant.to_string();
        let bytes = self.archive.output_removed(id);
        for job in a.job_ids() {
            cx.write_disk(crate::DiskWrite::RemoveOutput { job });
        }
        cx.write_disk(crate::DiskWrite::MarkOutputRemoved {
            pipeline: id,
            at_ms: cx.now_ms,
        });
        if let Some(s) = self.retention.settled.get_mut(&tenant) {
            s.with_output.remove(&(a.finished_at_ms, id));
        }
        let totals = &mut self.retention.totals;
        totals.outputs_removed += 1;
        totals.output_bytes_removed += bytes;
        cx.emit(Event::OutputRemoved {
            pipeline: id,
            tenant,
            bytes,
        });
    }

    fn forget_settled(&mut self, tenant: &str, key: (u64, PipelineId)) {
        if let Some(s) = self.retention.settled.get_mut(tenant) {
            s.pipelines.remove(&key);
            s.with_output.remove(&key);
            if s.is_empty() {
                self.retention.settled.remove(tenant);
            }
        }
    }

    /// Makes `id` a candidate for removal once it is finished and none of its jobs has a
    /// worker left, and has it archived once the command is accepted. Called when a pipeline
    /// finishes and when a worker is confirmed gone.
    pub(crate) fn settle_if_idle(&mut self, cx: &mut EntryContext, id: PipelineId) {
        let Some(p) = self.pipelines.get(&id) else {
            return;
        };
        let Some(finished_at_ms) = p.finished_at_ms else {
            return;
        };
        if p.jobs.iter().any(|j| self.assignments_of(*j).next().is_some()) {
            return;
        }
        let with_output = p.output_removed_at_ms.is_none() && p.jobs.iter().any(|j| self.holds_output(*j));
        let s = self.retention.settled.entry(p.tenant.clone()).or_default();
        s.pipelines.insert((finished_at_ms, id));
        if with_output {
            s.with_output.insert((finished_at_ms, id));
        }
        cx.settled.push(id);
    }
}
