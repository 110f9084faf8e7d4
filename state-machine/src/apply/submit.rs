//! `SubmitPipeline`: expand matrices, validate, deduplicate by idempotency key, create the
//! pipeline and jobs.

use super::{EntryContext, Handled};
use crate::QueueKey;
use crate::spec::validate_name;
use crate::state::IdempotencyRecord;
use crate::{
    Delivery, DeliveryOutcome, Event, Gate, Job, JobId, JobRef, JobState, Pipeline, PipelineId, PipelineSpec,
    PipelineState, Rejection, Response, Source, SpecError, State,
};
use std::collections::BTreeMap;

/// Longest `traceparent` a pipeline keeps (W3C version 00 is 55 bytes).
const MAX_TRACE_PARENT_BYTES: usize = 128;

/// Where a submitted pipeline comes from, beside its spec.
#[derive(Clone, Copy, Default)]
pub(crate) struct Origin<'a> {
    /// The repository and commit it runs.
    pub source: Option<&'a Source>,
    /// The pipeline it runs again.
    pub rerun_of: Option<PipelineId>,
}

impl State {
    pub(crate) fn submit_pipeline(
        &mut self,
        cx: &mut EntryContext,
        tenant: &str,
        key: Option<&str>,
        submitted: &PipelineSpec,
        origin: Origin<'_>,
        trace_parent: Option<&str>,
    ) -> Handled {
        let Origin { source, rerun_of } = origin;
        validate_name("tenant", tenant, &self.limits)?;
        if let Some(earlier) = rerun_of
            && self.tenant_of_pipeline(earlier) != Some(tenant)
        {
            // Another tenant's pipeline is answered as one that does not exist.
            return Err(Rejection::UnknownPipeline(earlier));
        }
        if let Some(source) = source {
            source.validate(&self.limits)?;
            if self.repository(tenant, &source.repository).is_none() {
                return Err(Rejection::UnknownRepository {
                    tenant: tenant.to_string(),
                    name: source.repository.clone(),
                });
            }
        }
        let expanded = submitted.expand_matrix(&self.limits)?;
        let spec = &expanded.spec;
        if let Some(key) = key {
            if key.is_empty() {
                return Err(SpecError::Empty {
                    field: "idempotency_key".into(),
                }
                .into());
            }
            if key.len() > self.limits.max_idempotency_key_bytes {
                let max = self.limits.max_idempotency_key_bytes;
                return Err(SpecError::TooLong {
                    field: "idempotency_key".into(),
                    len: key.len(),
                    max,
                }
                .into());
            }
            // An expired record is not pruned here (a refused or repeated submission changes
            // nothing), only ignored; accepted submissions prune below.
            if let Some(rec) = self.idempotency.get(&(tenant.to_string(), key.to_string()))
                && rec.expires_at_ms > cx.now_ms
            {
                return self.repeat_submission(rec.pipeline, key, spec);
            }
        }
        spec.validate(&self.limits)?;
        self.check_priority_ceiling(tenant, spec)?;
        self.check_secrets_exist(tenant, spec)?;
        self.check_some_pool_fits(spec)?;
        let skipped = {
            let vars = source
                .map(|s| {
                    let url = self
                        .repository(tenant, &s.repository)
                        .map_or("", |r| r.spec.url.as_str());
                    s.variables(url)
                })
                .unwrap_or_default();
            super::gates::skip_reasons(spec, &vars)?
        };

        // Validated: from here on nothing can be rejected.
        self.prune_idempotency(cx.now_ms);
        self.last_pipeline_id += 1;
        let pipeline_id = PipelineId(self.last_pipeline_id);
        let first_job = self.last_job_id + 1;
        self.last_job_id += spec.jobs.len() as u64;
        let id_of: BTreeMap<&str, JobId> = spec
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.name.as_str(), JobId(first_job + i as u64)))
            .collect();
        let mut dependants: BTreeMap<JobId, Vec<JobId>> = BTreeMap::new();
        for job in &spec.jobs {
            for need in &job.needs {
                dependants
                    .entry(id_of[need.as_str()])
                    .or_default()
                    .push(id_of[job.name.as_str()]);
            }
        }
        cx.emit(Event::PipelineRequested {
            pipeline: pipeline_id,
            name: spec.name.clone(),
            tenant: tenant.to_string(),
        });
        let mut refs = Vec::with_capacity(spec.jobs.len());
        for (job, skipped) in spec.jobs.iter().zip(skipped) {
            let id = id_of[job.name.as_str()];
            let state = match (&skipped, job.manual) {
                (Some(_), _) => JobState::Skipped,
                (None, true) => JobState::AwaitingApproval,
                (None, false) => JobState::Pending,
            };
            self.jobs.insert(
                id,
                Box::new(Job {
                    id,
                    pipeline: pipeline_id,
                    tenant: tenant.into(),
                    spec: job.clone(),
                    needs: job.needs.iter().map(|n| id_of[n.as_str()]).collect(),
                    dependants: dependants.remove(&id).unwrap_or_default().into_boxed_slice(),
                    state,
                    attempt: 1,
                    not_before_ms: 0,
                    current_step: None,
                    steps_completed: 0,
                    failed_step: None,
                    failure: None,
                    attempts: Vec::new(),
                    created_at_ms: cx.now_ms,
                    updated_at_ms: cx.now_ms,
                    log_bytes: 0,
                    stream_offset: 0,
                    log_truncated: false,
                    gate: skipped.clone().map(|reason| Box::new(Gate::Skipped { reason })),
                }),
            );
            if state == JobState::Pending {
                self.pending.insert(QueueKey::new(job.priority, tenant, id));
            }
            self.index.job_added(tenant, state, id);
            cx.emit(Event::JobRequested {
                job: id,
                pipeline: pipeline_id,
                name: job.name.to_string(),
            });
            if let Some(reason) = skipped {
                cx.emit(Event::JobSkipped { job: id, reason });
            }
            refs.push(JobRef {
                name: job.name.to_string(),
                id,
            });
        }
        self.tenants.entry(tenant.to_string()).or_default();
        self.index.pipeline_added(tenant, PipelineState::Running, pipeline_id);
        self.pipelines.insert(
            pipeline_id,
            Pipeline {
                id: pipeline_id,
                name: spec.name.clone(),
                tenant: tenant.to_string(),
                idempotency_key: key.map(str::to_string),
                jobs: refs.iter().map(|r| r.id).collect(),
                state: PipelineState::Running,
                created_at_ms: cx.now_ms,
                finished_at_ms: None,
                output_removed_at_ms: None,
                // A well-formed traceparent is 55 bytes; anything far longer is not kept.
                trace_parent: trace_parent
                    .filter(|t| t.len() <= MAX_TRACE_PARENT_BYTES)
                    .map(str::to_string),
                source: source.cloned(),
                rerun_of,
            },
        );
        // Cloned only for a tenant with notifiers.
        if self.notifiers_of(tenant).next().is_some()
            && let Some(p) = self.pipelines.get(&pipeline_id).cloned()
        {
            self.notify(&p, cx.now_ms);
        }
        if let Some(source) = source {
            let repo = self.repositories.get(&(tenant.to_string(), source.repository.clone()));
            self.statuses
                .owe(pipeline_id, &spec.name, tenant, source, repo, PipelineState::Running);
        }
        // The delivery that asked for it is remembered with its pipeline (once: a retried
        // delivery is a repeated key, answered above).
        if let Some((source, delivery)) = source.and_then(|s| Some((s, s.delivery.as_ref()?))) {
            let key = (tenant.to_string(), source.repository.clone());
            if let Some(repo) = self.repositories.get_mut(&key) {
                repo.record(Delivery {
                    id: delivery.clone(),
                    event: source.event.as_str().to_string(),
                    at_ms: cx.now_ms,
                    outcome: DeliveryOutcome::Started { pipeline: pipeline_id },
                });
            }
        }
        if let Some(key) = key {
            let expires_at_ms = cx.now_ms.saturating_add(self.limits.idempotency_ttl_ms);
            self.idempotency.insert(
                (tenant.to_string(), key.to_string()),
                IdempotencyRecord {
                    pipeline: pipeline_id,
                    expires_at_ms,
                },
            );
            self.idempotency_expiry
                .insert((expires_at_ms, tenant.to_string(), key.to_string()));
        }
        // Every job skipped: nothing will run, so the pipeline ends here.
        self.close_pipeline_if_done(cx, pipeline_id);
        Ok(Response::Submitted {
            pipeline: pipeline_id,
            jobs: refs,
            duplicate: false,
        })
    }

    /// A retry with a known key returns the first result; the same key with another spec is refused.
    /// A key whose pipeline settled (archived: its spec is on disk) or was removed by
    /// retention still names it: the retry is answered as that pipeline without jobs, and
    /// nothing runs twice. The node compares the archived specs with the request and refuses
    /// a different one (`refuse_reused_key`), then fills in the jobs (`complete_submission`);
    /// once retention removed the records, a different spec cannot be told apart.
    fn repeat_submission(&self, pipeline: PipelineId, key: &str, spec: &PipelineSpec) -> Handled {
        let Some(p) = self.pipelines.get(&pipeline) else {
            return Ok(Response::Submitted {
                pipeline,
                jobs: Vec::new(),
                duplicate: true,
            });
        };
        if !spec.is_submitted_as(&p.name, p.jobs.iter().map(|id| &self.jobs[id].spec)) {
            return Err(Rejection::IdempotencyKeyReused {
                key: key.to_string(),
                pipeline,
            });
        }
        let jobs = p
            .jobs
            .iter()
            .map(|id| JobRef {
                name: self.jobs[id].spec.name.to_string(),
                id: *id,
            })
            .collect();
        Ok(Response::Submitted {
            pipeline,
            jobs,
            duplicate: true,
        })
    }

    /// The tenant of pipeline `id`, live or archived (`None` once removed, or never given).
    pub fn tenant_of_pipeline(&self, id: PipelineId) -> Option<&str> {
        match self.pipelines.get(&id) {
            Some(p) => Some(&p.tenant),
            None => self.archive.tenant_of(id),
        }
    }

    /// Refuses a job whose priority is above its tenant's ceiling (`Quota::max_priority`).
    fn check_priority_ceiling(&self, tenant: &str, spec: &PipelineSpec) -> Result<(), Rejection> {
        let Some(ceiling) = self
            .tenants
            .get(tenant)
            .and_then(|t| t.quota.as_ref())
            .and_then(|q| q.max_priority)
        else {
            return Ok(());
        };
        match spec.jobs.iter().find(|job| job.priority > ceiling) {
            None => Ok(()),
            Some(job) => Err(SpecError::AboveCeiling {
                field: format!("jobs[{}].priority", job.name),
                priority: job.priority,
                tenant: tenant.to_string(),
                ceiling,
            }
            .into()),
        }
    }

    /// Refuses a job that uses a secret its tenant does not have (one deleted later fails
    /// the attempt that needs it).
    fn check_secrets_exist(&self, tenant: &str, spec: &PipelineSpec) -> Result<(), Rejection> {
        for job in &spec.jobs {
            if let Some((source, var, name)) = job
                .secret_uses()
                .find(|(_, _, name)| self.secret(tenant, name).is_none())
            {
                return Err(SpecError::UnknownSecret {
                    field: format!("jobs[{}].{source}.{var}", job.name),
                    tenant: tenant.to_string(),
                    name: name.to_string(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Refuses a job that no registered pool could run even when empty.
    fn check_some_pool_fits(&self, spec: &PipelineSpec) -> Result<(), Rejection> {
        for job in &spec.jobs {
            if self.pools.values().any(|p| p.can_ever_run(job)) {
                continue;
            }
            let reason = if self.pools.is_empty() {
                "no pools are registered".to_string()
            } else {
                self.pools
                    .values()
                    .filter_map(|p| p.static_misfit(job))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            return Err(SpecError::NoPoolFits {
                field: format!("jobs[{}]", job.name),
                reason,
            }
            .into());
        }
        Ok(())
    }

    /// Forgets idempotency keys whose time is up. Driven by the entries' `now_ms`, so every
    /// replica forgets the same keys at the same index.
    fn prune_idempotency(&mut self, now_ms: u64) {
        while let Some(first) = self.idempotency_expiry.get_min() {
            if first.0 > now_ms {
                break;
            }
            if let Some((_, tenant, key)) = self.idempotency_expiry.remove_min() {
                self.idempotency.remove(&(tenant, key));
            }
        }
    }
}
