//! The replicated state and its single entry point, `apply`.
//!
//! All collections are ordered so that iteration, serialization and therefore snapshots are
//! byte-identical on every replica. The large ones are persistent (`imbl::OrdMap`/`OrdSet`):
//! cloning the state shares their nodes, so a snapshot copies it in microseconds under the
//! store's lock and encodes the copy after releasing it, while applies go on.

use crate::apply::EntryContext;
use crate::pending_queue::PendingQueue;
use crate::{
    ApplyContext, Assignment, Command, Event, EventId, Job, JobId, Limits, Pipeline, PipelineId, Pool, Proposal,
    Response, Tenant,
};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdempotencyRecord {
    pub pipeline: PipelineId,
    pub expires_at_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub(crate) limits: Limits,
    /// Highest `now_ms` of an accepted command; handlers see `max(this, proposal.now_ms)`.
    pub(crate) now_ms: u64,
    pub(crate) last_pipeline_id: u64,
    pub(crate) last_job_id: u64,
    pub(crate) pipelines: OrdMap<PipelineId, Pipeline>,
    /// Boxed: a job is some 500 bytes, and a leaf holds room for sixteen entries while
    /// leaves filled in id order stay about half full; boxed, the empty room is pointers.
    pub(crate) jobs: OrdMap<JobId, Box<Job>>,
    /// Live assignments by `(job, attempt)`.
    /// Boxed for the same reason as `jobs`.
    pub(crate) assignments: OrdMap<(JobId, u32), Box<Assignment>>,
    pub(crate) pools: OrdMap<String, Pool>,
    pub(crate) tenants: OrdMap<String, Tenant>,
    /// `(tenant, key) -> pipeline`, forgotten after `limits.idempotency_ttl_ms`.
    pub(crate) idempotency: OrdMap<(String, String), IdempotencyRecord>,
    /// `(expires_at_ms, tenant, key)` for pruning the table above in order.
    pub(crate) idempotency_expiry: OrdSet<(u64, String, String)>,
    /// Jobs in PENDING, in scheduling order. DAG readiness and backoff are checked by readers.
    pub(crate) pending: PendingQueue,
    /// Last event the leader's publisher had acknowledged by the external stream.
    pub(crate) events_published_through: Option<EventId>,
    /// Jobs and pipelines by state, and job counts by state, for reads and metrics.
    pub(crate) index: crate::StateIndex,
    /// Each client's last applied request and its response (`session.rs`).
    pub(crate) sessions: crate::Sessions,
    /// API tokens by id (`token.rs`), the last id given, and whether the first admin token
    /// was ever created (bootstrap is one-shot).
    pub(crate) tokens: BTreeMap<crate::TokenId, crate::TokenRecord>,
    /// The same tokens by the SHA-256 of their secret, for the check of every request.
    pub(crate) tokens_by_secret: BTreeMap<[u8; 32], crate::TokenId>,
    pub(crate) last_token_id: u64,
    pub(crate) tokens_bootstrapped: bool,
    /// Join tokens by the SHA-256 of their secret (`join_token.rs`).
    pub(crate) join_tokens: BTreeMap<[u8; 32], crate::JoinTokenRecord>,
    /// Sealed secrets by `(tenant, name)` (`secret.rs`), and their sealed bytes in all.
    pub(crate) secrets: BTreeMap<(String, String), crate::SecretRecord>,
    pub(crate) secret_bytes: usize,
    /// Wrapped data keys by id, and the one new values are sealed under.
    pub(crate) data_keys: BTreeMap<String, crate::WrappedDataKey>,
    pub(crate) active_data_key: Option<String>,
    /// Retention policies, the settled pipelines they choose from, and what they removed.
    pub(crate) retention: crate::retention::Retention,
    /// Settled pipelines, their records on disk, as compact records (`archive.rs`).
    pub(crate) archive: crate::Archive,
    /// Source repositories by `(tenant, name)` (`repository.rs`).
    pub(crate) repositories: BTreeMap<(String, String), crate::Repository>,
    /// Commit statuses owed to forges (`status_outbox.rs`).
    pub(crate) statuses: crate::status_outbox::StatusOutbox,
    /// Schedules by `(tenant, name)` (`schedule.rs`).
    pub(crate) schedules: BTreeMap<(String, String), crate::schedule::Schedule>,
    /// Notifiers by `(tenant, name)`, and the notifications owed (`notifier.rs`).
    pub(crate) notifiers: BTreeMap<(String, String), crate::notifier::NotifierSpec>,
    pub(crate) notifications: crate::notifier::NotificationOutbox,
    /// The files jobs kept, by job (`artifact.rs`); their bytes are blobs on the nodes.
    pub(crate) artifacts: crate::Artifacts,
    /// The tenants' caches, by key (`cache.rs`); their bytes are blobs on the nodes.
    pub(crate) caches: crate::Caches,
}

impl State {
    pub fn new(limits: Limits) -> Self {
        State {
            limits,
            ..State::default()
        }
    }

    /// Applies one committed entry and drops its output writes: for callers that keep no
    /// job output (see `apply_with_disk`).
    pub fn apply(&mut self, ctx: ApplyContext, proposal: &Proposal) -> (Response, Vec<Event>) {
        self.apply_with_disk(ctx, proposal, &mut crate::DiscardDisk)
    }

    /// Applies one committed entry. Deterministic: the same state and entry give the same
    /// result and the same output writes (into `output`, only if accepted) on every replica.
    /// A rejected command leaves the state untouched and writes nothing.
    pub fn apply_with_disk(
        &mut self,
        ctx: ApplyContext,
        proposal: &Proposal,
        output: &mut impl crate::DiskSink,
    ) -> (Response, Vec<Event>) {
        // A retry of a client's last request gets the first answer; an older one is refused.
        // Neither changes anything, not even the clock.
        if let Some(request) = proposal.request {
            match self.sessions.seen(request, self) {
                crate::session::Seen::New => {}
                crate::session::Seen::Retry(response) => return (response, Vec::new()),
                crate::session::Seen::Stale { last_seq } => {
                    let rejection = crate::Rejection::StaleRequest {
                        client: request.client,
                        seq: request.seq,
                        last_seq,
                    };
                    return (Response::Rejected(rejection), Vec::new());
                }
            }
        }
        // Proposers' clocks may differ; the state's clock never goes back.
        let mut cx = EntryContext {
            position: ctx,
            now_ms: self.now_ms.max(proposal.now_ms),
            events: Vec::new(),
            output: Vec::new(),
            settled: Vec::new(),
        };
        let result = match &proposal.command {
            Command::Batch { commands } => self.apply_batch(&mut cx, commands),
            command => {
                let result = self.apply_command(&mut cx, command, proposal.trace_parent.as_deref());
                if result.is_ok() {
                    self.archive_settled(&mut cx);
                }
                result
            }
        };
        #[cfg(debug_assertions)]
        if let Err(violation) = self.check_invariants() {
            panic!(
                "invariant violated after {} at index {}: {violation}",
                proposal.command.kind(),
                ctx.log_index
            );
        }
        match result {
            Ok(response) => {
                if let Some(event) = proposal
                    .actor
                    .and_then(|token| crate::audit::audited(token, &proposal.command, &response))
                {
                    cx.emit(event);
                }
                self.now_ms = cx.now_ms;
                if let Some(request) = proposal.request {
                    let (ttl_ms, max) = (self.limits.session_ttl_ms, self.limits.max_sessions);
                    self.sessions.record(request, &response, self.now_ms, ttl_ms, max);
                }
                for write in cx.output {
                    output.write(write);
                }
                (response, cx.events)
            }
            Err(rejection) => {
                debug_assert!(cx.events.is_empty(), "a rejected command emitted events");
                debug_assert!(cx.output.is_empty(), "a rejected command wrote output");
                (Response::Rejected(rejection), Vec::new())
            }
        }
    }

    /// Applies each command of a batch on its own: a rejected one changes nothing and the
    /// others still apply. Only an oversized batch, or one holding a plan or a batch, is
    /// refused as a whole.
    fn apply_batch(&mut self, cx: &mut EntryContext, commands: &[Command]) -> Result<Response, crate::Rejection> {
        if commands.len() > crate::MAX_BATCH_COMMANDS {
            return Err(crate::Rejection::BatchTooLarge {
                count: commands.len(),
                max: crate::MAX_BATCH_COMMANDS,
            });
        }
        // A plan's fencing tokens come from its entry's log index: two plans in one entry could
        // give two attempts of a job the same token, and a stale worker could then pass as the
        // new one. Batches do not nest.
        if let Some(c) = commands
            .iter()
            .find(|c| matches!(c, Command::ApplyPlan { .. } | Command::Batch { .. }))
        {
            return Err(crate::Rejection::NotBatchable {
                kind: c.kind().to_string(),
            });
        }
        let mut responses = Vec::with_capacity(commands.len());
        for command in commands {
            let events_before = cx.events.len();
            // Untraced: the entry's trace belongs to the batch, not to one of its commands.
            responses.push(match self.apply_command(cx, command, None) {
                Ok(r) => {
                    // Archived before the next command, which then sees the compact record.
                    self.archive_settled(cx);
                    r
                }
                Err(rejection) => {
                    debug_assert_eq!(cx.events.len(), events_before, "a rejected command emitted events");
                    Response::Rejected(rejection)
                }
            });
        }
        // A batch whose every command was refused changed nothing, not even the clock.
        if responses.iter().all(|r| r.rejection().is_some()) {
            cx.now_ms = self.now_ms;
        }
        Ok(Response::Batch { responses })
    }

    /// Dispatches one command to its handler. `trace_parent` is kept by a submitted pipeline.
    fn apply_command(
        &mut self,
        cx: &mut EntryContext,
        command: &Command,
        trace_parent: Option<&str>,
    ) -> Result<Response, crate::Rejection> {
        match command {
            Command::SubmitPipeline {
                tenant,
                idempotency_key,
                spec,
                source,
                rerun_of,
            } => {
                let origin = crate::apply::Origin {
                    source: source.as_deref(),
                    rerun_of: *rerun_of,
                };
                self.submit_pipeline(cx, tenant, idempotency_key.as_deref(), spec, origin, trace_parent)
            }
            Command::CancelPipeline { pipeline } => self.cancel_pipeline(cx, *pipeline),
            Command::CancelJob { job } => self.cancel_job(cx, *job),
            Command::ApproveJob { job, by, role } => self.approve_job(cx, *job, by, *role),
            Command::ArtifactStored {
                job,
                fencing,
                digest,
                size_bytes,
                entries,
            } => {
                let stored = crate::apply::Stored {
                    digest,
                    size_bytes: *size_bytes,
                    entries: *entries,
                };
                self.artifact_stored(cx, *job, *fencing, stored)
            }
            Command::ArtifactsFailed { job, fencing, reason } => self.artifacts_failed(cx, *job, *fencing, reason),
            Command::ExpireArtifacts { jobs } => self.expire_artifacts(cx, jobs),
            Command::CacheSaved { job, fencing, outcome } => self.cache_saved(cx, *job, *fencing, outcome),
            Command::CacheRestored { job, fencing, digest } => self.cache_restored(cx, *job, *fencing, digest),
            Command::ClearCaches { tenant, key } => self.clear_caches(cx, tenant, key.as_deref()),
            Command::ApplyPlan { placements } => self.apply_plan(cx, placements),
            Command::WorkerCreated {
                job,
                fencing,
                worker_id,
            } => self.worker_created(cx, *job, *fencing, worker_id),
            Command::WorkerStarted { job, fencing } => self.worker_started(cx, *job, *fencing),
            Command::StepStarted { job, fencing, step } => self.step_started(cx, *job, *fencing, *step),
            Command::StepFinished {
                job,
                fencing,
                step,
                exit_code,
            } => self.step_finished(cx, *job, *fencing, *step, *exit_code),
            Command::WorkerExited {
                job,
                fencing,
                exit_code,
                jitter_permille,
            } => self.worker_exited(cx, *job, *fencing, *exit_code, *jitter_permille),
            Command::WorkerLost { job, fencing, reason } => self.worker_lost(cx, *job, *fencing, reason),
            Command::WorkerTerminated {
                job,
                fencing,
                jitter_permille,
            } => self.worker_terminated(cx, *job, *fencing, *jitter_permille),
            Command::JobTimedOut { job, fencing } => self.job_timed_out(cx, *job, *fencing),
            Command::AppendLog {
                job,
                fencing,
                offset,
                data,
            } => self.append_log(cx, *job, *fencing, *offset, data),
            Command::SkipLog {
                job,
                fencing,
                offset,
                to,
            } => self.skip_log(*job, *fencing, *offset, *to),
            Command::RegisterPool { spec } => self.register_pool(cx, spec),
            Command::UpdatePoolCapacity {
                pool,
                capacity,
                max_workers,
            } => self.update_pool_capacity(cx, pool, *capacity, *max_workers),
            Command::SetPoolDraining { pool, draining } => self.set_pool_draining(cx, pool, *draining),
            Command::RemovePool { pool } => self.remove_pool(cx, pool),
            Command::SetPoolProblem { pool, problem } => self.set_pool_problem(pool, problem.as_deref()),
            Command::SetTenantQuota { tenant, quota } => self.set_tenant_quota(cx, tenant, quota.as_ref()),
            Command::UpdateLimits { limits } => self.update_limits(cx, limits),
            Command::RecordEventsPublished { through } => Ok(self.record_events_published(*through)),
            Command::CreateToken { grant, bootstrap } => self.create_token(cx, grant, *bootstrap),
            Command::RevokeToken { id } => self.revoke_token(cx, *id),
            Command::CreateJoinToken { secret_sha256, ttl_ms } => self.create_join_token(cx, secret_sha256, *ttl_ms),
            Command::RedeemJoinToken { secret_sha256, node } => self.redeem_join_token(cx, secret_sha256, *node),
            Command::SetSecret {
                tenant,
                name,
                sealed,
                new_data_key,
                expected_version,
            } => self.set_secret(cx, tenant, name, sealed, new_data_key.as_ref(), *expected_version),
            Command::DeleteSecret { tenant, name } => self.delete_secret(cx, tenant, name),
            Command::RotateDataKey { key } => self.rotate_data_key(key),
            Command::SetRetention { tenant, policy } => self.set_retention(cx, tenant.as_deref(), policy.as_ref()),
            Command::ExpireHistory { pipelines, outputs } => self.expire_history(cx, pipelines, outputs),
            Command::PutRepository { tenant, spec } => self.put_repository(cx, tenant, spec),
            Command::RemoveRepository { tenant, name } => self.remove_repository(tenant, name),
            Command::RecordDelivery {
                tenant,
                repository,
                delivery,
            } => self.record_delivery(cx, tenant, repository, delivery),
            Command::PutNotifier { tenant, spec } => self.put_notifier(tenant, spec),
            Command::RemoveNotifier { tenant, name } => self.remove_notifier(tenant, name),
            Command::NotificationsSent { keys } => self.notifications_sent(keys),
            Command::PutSchedule {
                tenant,
                spec,
                next_due_ms,
            } => self.put_schedule(cx, tenant, spec, *next_due_ms),
            Command::RemoveSchedule { tenant, name } => self.remove_schedule(tenant, name),
            Command::FireSchedule {
                tenant,
                name,
                due_ms,
                next_due_ms,
                run,
            } => self.fire_schedule(cx, tenant, name, *due_ms, *next_due_ms, run),
            Command::StatusReported { pipeline, state } => Ok(Response::Done {
                changed: self.statuses.reported(*pipeline, *state),
            }),
            Command::Batch { .. } => Err(crate::Rejection::NotBatchable {
                kind: command.kind().to_string(),
            }),
        }
    }

    // Read access for schedulers, APIs and tests.

    /// Last event acknowledged by the external event stream (NATS), if any.
    pub fn events_published_through(&self) -> Option<EventId> {
        self.events_published_through
    }

    /// Commit statuses owed to forges.
    pub fn statuses(&self) -> &crate::status_outbox::StatusOutbox {
        &self.statuses
    }

    /// The files jobs kept (`artifact.rs`).
    pub fn artifacts(&self) -> &crate::Artifacts {
        &self.artifacts
    }

    /// The tenants' caches (`cache.rs`).
    pub fn caches(&self) -> &crate::Caches {
        &self.caches
    }

    /// The cache `job` restores before its first step: its tenant's cache of its key, if the
    /// job pulls one and the tenant keeps it.
    pub fn cache_for(&self, job: &Job) -> Option<&crate::CacheRecord> {
        let spec = job.spec.cache.as_deref().filter(|c| c.policy.pulls())?;
        self.caches.get(&job.tenant, &spec.key)
    }

    /// The artifacts `job` receives before its first step: those of the jobs it needs that
    /// kept any, in the order of its `needs`. The leader delivers them, and the nodes serve
    /// them to a pod, by this one order.
    pub fn inputs_of<'a>(&'a self, job: &'a Job) -> impl Iterator<Item = &'a crate::ArtifactRecord> + 'a {
        job.needs.iter().filter_map(|need| self.artifacts.get(*need))
    }

    /// Retention policies, settled pipelines and the record of removals.
    pub fn retention(&self) -> &crate::retention::Retention {
        &self.retention
    }

    /// Whether `pipeline` was given out and is held neither live nor archived: removed by
    /// retention.
    pub fn pipeline_removed(&self, pipeline: PipelineId) -> bool {
        pipeline.0 >= 1
            && pipeline.0 <= self.last_pipeline_id
            && !self.pipelines.contains_key(&pipeline)
            && !self.archive.contains(pipeline)
    }

    /// Whether `job` was given out and is no longer live: archived with its pipeline, or
    /// removed by retention (the store tells which).
    pub fn job_not_live(&self, job: JobId) -> bool {
        job.0 >= 1 && job.0 <= self.last_job_id && !self.jobs.contains_key(&job)
    }

    /// The compact records of settled pipelines, whose full records are on disk.
    pub fn archive(&self) -> &crate::Archive {
        &self.archive
    }

    /// The client sessions: each client's last applied request.
    pub fn sessions(&self) -> &crate::Sessions {
        &self.sessions
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The latest `now_ms` the state has seen.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn pipeline(&self, id: PipelineId) -> Option<&Pipeline> {
        self.pipelines.get(&id)
    }

    /// The `traceparent` kept by `job`'s pipeline, if it was submitted traced.
    pub fn trace_parent_of_job(&self, job: JobId) -> Option<&str> {
        self.job(job)
            .and_then(|j| self.pipeline(j.pipeline))
            .and_then(|p| p.trace_parent.as_deref())
    }

    pub fn pipelines(&self) -> impl DoubleEndedIterator<Item = &Pipeline> {
        self.pipelines.values()
    }

    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id).map(|j| &**j)
    }

    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values().map(|j| &**j)
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    /// Every tenant the state knows (one with a quota, or with work placed), by name.
    pub fn tenants(&self) -> impl Iterator<Item = (&str, &Tenant)> {
        self.tenants.iter().map(|(name, t)| (name.as_str(), t))
    }

    pub fn assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.assignments.values().map(|a| &**a)
    }

    /// Live assignments after the key `after` (all of them for `None`), in key order: for
    /// reading them in bounded chunks.
    pub fn assignments_after(&self, after: Option<(JobId, u32)>) -> impl Iterator<Item = &Assignment> {
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        self.assignments
            .range((lower, std::ops::Bound::Unbounded))
            .map(|(_, a)| &**a)
    }

    /// Live assignments of one job (at most one unless a bug broke the invariants).
    pub fn assignments_of(&self, job: JobId) -> impl Iterator<Item = &Assignment> {
        self.assignments.range((job, 0)..=(job, u32::MAX)).map(|(_, a)| &**a)
    }

    /// Jobs with an id greater than `after`, in id order: a range read.
    pub fn jobs_after(&self, after: JobId) -> impl Iterator<Item = &Job> {
        self.jobs
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(_, j)| &**j)
    }

    /// Pipelines with an id greater than `after`, in id order: a range read.
    pub fn pipelines_after(&self, after: PipelineId) -> impl Iterator<Item = &Pipeline> {
        self.pipelines
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(_, p)| p)
    }

    /// The indexes of jobs and pipelines by state.
    pub fn index(&self) -> &crate::StateIndex {
        &self.index
    }

    /// Jobs in PENDING by priority, tenant and submission order (not all of them ready).
    pub fn pending_jobs(&self) -> impl Iterator<Item = &Job> {
        self.pending.iter().filter_map(|k| self.job(k.job))
    }

    /// The pending queue, for the scheduler's walk by priority level and tenant.
    pub fn pending_queue(&self) -> &PendingQueue {
        &self.pending
    }

    /// Output bytes kept per job of `tenant`: its retention policy's
    /// `output_max_bytes_per_job` (the tenant's own, else the default), else the limit.
    pub fn log_cap_bytes(&self, tenant: &str) -> u64 {
        self.retention
            .policy_for(tenant)
            .and_then(|p| p.output_max_bytes_per_job)
            .unwrap_or(self.limits.max_log_bytes_per_job)
    }

    /// Whether `job` has output in the store (its count of stored bytes is not zero).
    pub fn holds_output(&self, job: JobId) -> bool {
        self.jobs.get(&job).is_some_and(|j| j.log_bytes > 0)
    }

    /// Secret `name` of `tenant`, sealed.
    pub fn secret(&self, tenant: &str, name: &str) -> Option<&crate::SecretRecord> {
        self.secrets.get(&(tenant.to_string(), name.to_string()))
    }

    /// Every secret, by tenant and name.
    pub fn secrets(&self) -> impl Iterator<Item = (&str, &str, &crate::SecretRecord)> {
        self.secrets.iter().map(|((t, n), r)| (t.as_str(), n.as_str(), r))
    }

    /// The secrets of one tenant, by name.
    pub fn secrets_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = (&'a str, &'a crate::SecretRecord)> + 'a {
        let from = (tenant.to_string(), String::new());
        self.secrets
            .range(from..)
            .take_while(move |((t, _), _)| t == tenant)
            .map(|((_, n), r)| (n.as_str(), r))
    }

    pub fn data_key(&self, id: &str) -> Option<&crate::WrappedDataKey> {
        self.data_keys.get(id)
    }

    /// The data key new secret values are sealed under, once there is one.
    pub fn active_data_key(&self) -> Option<&crate::WrappedDataKey> {
        self.active_data_key.as_deref().and_then(|id| self.data_keys.get(id))
    }

    /// The tenant whose work `event` is about: its job's or its pipeline's. `None` for the
    /// events of the cluster, its pools and the audit trail, which belong to no tenant, and
    /// for an event about a job whose pipeline is archived (the node's store knows its
    /// tenant; an event naming its pipeline is answered from the archive).
    pub fn tenant_of<'a>(&'a self, event: &'a Event) -> Option<&'a str> {
        if event.is_audit() {
            return None;
        }
        // Removal events name their tenant: the pipeline they are about is gone.
        if let Event::PipelineRemoved { tenant, .. }
        | Event::OutputRemoved { tenant, .. }
        | Event::CacheRemoved { tenant, .. } = event
        {
            return Some(tenant);
        }
        event
            .job()
            .and_then(|j| self.jobs.get(&j))
            .map(|j| j.tenant.as_str())
            .or_else(|| {
                event.pipeline().and_then(|p| {
                    self.pipelines
                        .get(&p)
                        .map(|p| p.tenant.as_str())
                        .or(self.archive.tenant_of(p))
                })
            })
    }

    /// Whether every job `job` needs has finished in a way that lets it run.
    pub fn needs_satisfied(&self, job: &Job) -> bool {
        job.needs
            .iter()
            .all(|n| self.job(*n).is_some_and(crate::apply::satisfies_dependants))
    }
}
