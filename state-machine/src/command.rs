//! The closed set of changes the replicated state accepts.
//!
//! A `Proposal` is what goes into the Raft log: the command plus the proposer's clock reading.
//! `ApplyContext` is what the log adds when the entry commits (its index and term).

use crate::{
    ClientRequest, Delivery, EventId, FencingToken, JobId, Limits, PipelineId, PipelineSpec, PoolSpec, Quota,
    RepositorySpec, Resources, SealedValue, Source, TokenGrant, TokenId, WrappedDataKey,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The Raft application data: one command stamped with the wall clock of the leader that
/// appends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub now_ms: u64,
    pub command: Command,
    /// W3C `traceparent` of the request that caused the command, if it was traced. A submitted
    /// pipeline keeps it, so the spans of its scheduling, workers and jobs join the request's
    /// trace on whichever node records them. Never read by the domain otherwise.
    pub trace_parent: Option<String>,
    /// The client session stamp of a client's command (see `session.rs`): a proposal that
    /// carries the stamp of the last request its client had applied is a retry, answered with
    /// the first response and not applied again. The leader's own reports carry none: they are
    /// idempotent and fenced, and never forwarded.
    pub request: Option<ClientRequest>,
    /// The API token whose request this is, when the caller was authenticated: every change it
    /// makes is recorded as an `Audited` event naming it. The leader's own commands carry none.
    pub actor: Option<TokenId>,
}

impl Proposal {
    /// An untraced proposal.
    pub fn new(now_ms: u64, command: Command) -> Self {
        Proposal {
            now_ms,
            command,
            trace_parent: None,
            request: None,
            actor: None,
        }
    }

    /// The same proposal made on behalf of the API token `actor`.
    pub fn by(mut self, actor: Option<TokenId>) -> Self {
        self.actor = actor;
        self
    }

    /// The same proposal stamped as `request` of a client session.
    pub fn from_client(mut self, request: ClientRequest) -> Self {
        self.request = Some(request);
        self
    }
}

/// Where the entry sits in the log; supplied by the storage layer at apply time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyContext {
    pub log_index: u64,
    pub term: u64,
}

/// One placement of a scheduling plan. Resources come from the job's spec, not from the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub job: JobId,
    pub attempt: u32,
    pub pool: String,
    /// The host the worker will live on, for pools whose workers only one host can see
    /// (process, Docker behind a local socket): the placing leader's. `None` when every node
    /// reaches them. Only a leader on this host asks about, or reports on, the worker.
    #[serde(default)]
    pub worker_host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    SubmitPipeline {
        tenant: String,
        idempotency_key: Option<String>,
        spec: PipelineSpec,
        /// The repository and commit it runs, when it comes from source (a webhook, a
        /// schedule, `flotilla repo run`); its delivery, if any, is recorded on the repository.
        source: Option<Box<Source>>,
        /// The pipeline this one runs again (same spec and source, or only its failed jobs
        /// and what depends on them): a pipeline of the same tenant.
        rerun_of: Option<PipelineId>,
    },
    CancelPipeline {
        pipeline: PipelineId,
    },
    CancelJob {
        job: JobId,
    },
    /// A batch of placements computed by the leader's scheduler from a possibly stale view;
    /// each is re-checked and accepted or rejected on its own.
    ApplyPlan {
        placements: Vec<Placement>,
    },
    WorkerCreated {
        job: JobId,
        fencing: FencingToken,
        worker_id: String,
    },
    WorkerStarted {
        job: JobId,
        fencing: FencingToken,
    },
    StepStarted {
        job: JobId,
        fencing: FencingToken,
        step: u32,
    },
    StepFinished {
        job: JobId,
        fencing: FencingToken,
        step: u32,
        exit_code: i32,
    },
    /// The worker's process ended. `jitter_permille` (0..=1000) spreads the retry backoff.
    WorkerExited {
        job: JobId,
        fencing: FencingToken,
        exit_code: i32,
        jitter_permille: u16,
    },
    /// The worker disappeared without an exit status (container gone, pod evicted, host lost).
    WorkerLost {
        job: JobId,
        fencing: FencingToken,
        reason: String,
    },
    /// The provider confirmed the worker no longer exists; its capacity is released.
    WorkerTerminated {
        job: JobId,
        fencing: FencingToken,
        jitter_permille: u16,
    },
    JobTimedOut {
        job: JobId,
        fencing: FencingToken,
    },
    /// Output of the current attempt; `offset` is the position of `data` in the attempt's output
    /// stream, so a chunk resent after a leader change is stored once.
    AppendLog {
        job: JobId,
        fencing: FencingToken,
        offset: u64,
        data: Vec<u8>,
    },
    /// Output `offset..to` of the current attempt was produced but is not sent: the job's log
    /// is full (`log_truncated`), so `apply` would drop it. Moves the stream offset alone, so
    /// output past the cap costs one small entry instead of a chunk per 64 KiB.
    SkipLog {
        job: JobId,
        fencing: FencingToken,
        offset: u64,
        to: u64,
    },
    RegisterPool {
        spec: PoolSpec,
    },
    UpdatePoolCapacity {
        pool: String,
        capacity: Resources,
        max_workers: u32,
    },
    SetPoolDraining {
        pool: String,
        draining: bool,
    },
    RemovePool {
        pool: String,
    },
    /// The leader cannot drive `pool`'s workers (`problem` says why), or can again (`None`).
    SetPoolProblem {
        pool: String,
        problem: Option<String>,
    },
    SetTenantQuota {
        tenant: String,
        quota: Option<Quota>,
    },
    UpdateLimits {
        limits: Limits,
    },
    /// The leader's event publisher had every event up to `through` acknowledged by the
    /// external stream; a new leader resumes after it. Never moves back.
    RecordEventsPublished {
        through: EventId,
    },
    /// Sets (`Some`) or lifts (`None`) the retention policy of `tenant`, or the cluster's
    /// default for tenants without one when `tenant` is `None` (`retention/`).
    SetRetention {
        tenant: Option<String>,
        policy: Option<crate::retention::RetentionPolicy>,
    },
    /// Removes what the leader found due under the retention policies
    /// (`retention::due`): whole pipelines with their jobs and output, and the output alone of
    /// others. `apply` re-checks each against the policy at the entry's time and passes over
    /// what is not due. At most `retention::MAX_EXPIRE_PER_COMMAND` in all.
    ExpireHistory {
        pipelines: Vec<PipelineId>,
        outputs: Vec<PipelineId>,
    },
    /// Several commands in one entry, applied in order, each accepted or rejected on its own
    /// (`Response::Batch` answers each). The leader batches its worker reports this way, as
    /// group commit does for fsyncs: one entry carries many small changes. At most
    /// `MAX_BATCH_COMMANDS`; no `ApplyPlan` (its fencing tokens come from the entry's index)
    /// and no nested batch.
    Batch {
        commands: Vec<Command>,
    },
    /// Records a new API token (`token.rs`). `bootstrap`: the cluster's first admin token,
    /// which is refused once any token was ever created.
    CreateToken {
        grant: TokenGrant,
        bootstrap: bool,
    },
    /// Forgets a token: from this entry on no node accepts it.
    RevokeToken {
        id: TokenId,
    },
    /// Records a join token (`join_token.rs`) valid for `ttl_ms` from the entry's time.
    CreateJoinToken {
        secret_sha256: [u8; 32],
        ttl_ms: u64,
    },
    /// Uses a join token up for adding `node`: refused if it is unknown, expired, or used
    /// for another node.
    RedeemJoinToken {
        secret_sha256: [u8; 32],
        node: u64,
    },
    /// Stores a tenant's secret, sealed by the proposing node (`secret.rs`); `new_data_key`
    /// brings the data key it is sealed under when the state has none yet. With
    /// `expected_version` (a re-seal under a rotated key) it applies only over that version.
    SetSecret {
        tenant: String,
        name: String,
        sealed: SealedValue,
        new_data_key: Option<WrappedDataKey>,
        expected_version: Option<u64>,
    },
    DeleteSecret {
        tenant: String,
        name: String,
    },
    /// Makes `key` the data key new values are sealed under.
    RotateDataKey {
        key: WrappedDataKey,
    },
    /// Registers a repository of `tenant`, or replaces its settings (its deliveries stay).
    PutRepository {
        tenant: String,
        spec: RepositorySpec,
    },
    RemoveRepository {
        tenant: String,
        name: String,
    },
    /// Sets a notifier of `tenant` (`notifier.rs`), replacing one of that name.
    PutNotifier {
        tenant: String,
        spec: crate::notifier::NotifierSpec,
    },
    RemoveNotifier {
        tenant: String,
        name: String,
    },
    /// The leader delivered these notifications: they are no longer owed.
    NotificationsSent {
        keys: Vec<crate::notifier::NotificationKey>,
    },
    /// Sets a schedule of `tenant` (`schedule.rs`), first due at `next_due_ms` (the node
    /// reads it off the cron expression); a schedule of that name is replaced.
    PutSchedule {
        tenant: String,
        spec: crate::schedule::ScheduleSpec,
        next_due_ms: u64,
    },
    RemoveSchedule {
        tenant: String,
        name: String,
    },
    /// The leader fires a schedule's due time `due_ms` (refused unless it is the one due),
    /// running `run` and making `next_due_ms` the next.
    FireSchedule {
        tenant: String,
        name: String,
        due_ms: u64,
        next_due_ms: u64,
        run: Box<ScheduledRun>,
    },
    /// The leader posted `state` as the commit status of `pipeline` (`status_outbox.rs`):
    /// clears what it owes if that is still the state owed.
    StatusReported {
        pipeline: PipelineId,
        state: crate::PipelineState,
    },
    /// Records a webhook delivery that started nothing (ignored, or failed before a pipeline
    /// could be submitted), once per delivery id. A delivery that starts a pipeline is
    /// recorded by its `SubmitPipeline`.
    RecordDelivery {
        tenant: String,
        repository: String,
        delivery: Delivery,
    },
    /// Someone approves a manual job: `by` names them (their token's name), `role` is the
    /// role the node found their token to have; the job's `approval_role` asks for at least
    /// that much.
    ApproveJob {
        job: JobId,
        by: String,
        role: crate::Role,
    },
    /// The files the job's `artifacts` name were packed into the blob `digest` (the SHA-256 of
    /// its `size_bytes` bytes), which a majority of the nodes already hold. Proposed by the
    /// leader before the job's exit; refused past the job's or the tenant's limit.
    ArtifactStored {
        job: JobId,
        fencing: FencingToken,
        digest: String,
        size_bytes: u64,
        entries: u32,
    },
    /// The job's worker exited but the files its `artifacts` name could not be kept (a path
    /// missing, a limit passed): the job fails with `reason`.
    ArtifactsFailed {
        job: JobId,
        fencing: FencingToken,
        reason: String,
    },
    /// Artifacts past their expiry, chosen by the leader; `apply` re-checks each. At most
    /// `MAX_EXPIRE_ARTIFACTS`.
    ExpireArtifacts {
        jobs: Vec<JobId>,
    },
    /// What became of the job's cache after its steps succeeded: its paths packed into a blob
    /// a majority of the nodes hold, or why not. Proposed by the leader before the job's exit;
    /// a cache `apply` cannot keep (past the tenant's budget) is recorded as not saved, and
    /// the job succeeds all the same.
    CacheSaved {
        job: JobId,
        fencing: FencingToken,
        outcome: crate::CacheSave,
    },
    /// The job's worker was created with the cache blob `digest` restored: the cache counts as
    /// used now (if it still holds that blob).
    CacheRestored {
        job: JobId,
        fencing: FencingToken,
        digest: String,
    },
    /// Someone forgets `tenant`'s cache `key`, or all its caches when `key` is `None`.
    ClearCaches {
        tenant: String,
        key: Option<String>,
    },
}

/// What a fired due time does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduledRun {
    /// Submit this pipeline file's spec at this commit of the schedule's repository.
    Run { spec: PipelineSpec, source: Source },
    /// Run nothing, for this reason (a missed time under `skip`).
    Skip { reason: String },
    /// Run nothing: reading the branch or its pipeline file failed, for this reason.
    Fail { reason: String },
}

/// Most commands in one `Command::Batch`.
pub const MAX_BATCH_COMMANDS: usize = 4096;

impl Command {
    /// Whether a client may ask for it: what the REST API proposes on a caller's behalf
    /// (submit, cancel, register a pool, create and revoke tokens). Everything else is the leader's own to propose
    /// (plans, worker reports, capacity, limits, event bookkeeping), so a node's Raft port
    /// refuses it as a forward: a follower never forwards such a command, and anyone else who
    /// sends one forges it.
    pub fn is_client_request(&self) -> bool {
        matches!(
            self,
            Command::SubmitPipeline { .. }
                | Command::CancelPipeline { .. }
                | Command::CancelJob { .. }
                | Command::ApproveJob { .. }
                | Command::RegisterPool { .. }
                | Command::CreateToken { .. }
                | Command::RevokeToken { .. }
                | Command::SetSecret { .. }
                | Command::DeleteSecret { .. }
                | Command::PutRepository { .. }
                | Command::RemoveRepository { .. }
                | Command::RecordDelivery { .. }
                | Command::PutSchedule { .. }
                | Command::PutNotifier { .. }
                | Command::RemoveNotifier { .. }
                | Command::RemoveSchedule { .. }
                | Command::ClearCaches { .. }
        )
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::SubmitPipeline { .. } => "submit_pipeline",
            Command::CancelPipeline { .. } => "cancel_pipeline",
            Command::CancelJob { .. } => "cancel_job",
            Command::ApplyPlan { .. } => "apply_plan",
            Command::WorkerCreated { .. } => "worker_created",
            Command::WorkerStarted { .. } => "worker_started",
            Command::StepStarted { .. } => "step_started",
            Command::StepFinished { .. } => "step_finished",
            Command::WorkerExited { .. } => "worker_exited",
            Command::WorkerLost { .. } => "worker_lost",
            Command::WorkerTerminated { .. } => "worker_terminated",
            Command::JobTimedOut { .. } => "job_timed_out",
            Command::AppendLog { .. } => "append_log",
            Command::SkipLog { .. } => "skip_log",
            Command::RegisterPool { .. } => "register_pool",
            Command::UpdatePoolCapacity { .. } => "update_pool_capacity",
            Command::SetPoolDraining { .. } => "set_pool_draining",
            Command::RemovePool { .. } => "remove_pool",
            Command::SetPoolProblem { .. } => "set_pool_problem",
            Command::SetTenantQuota { .. } => "set_tenant_quota",
            Command::UpdateLimits { .. } => "update_limits",
            Command::RecordEventsPublished { .. } => "record_events_published",
            Command::Batch { .. } => "batch",
            Command::CreateToken { .. } => "create_token",
            Command::RevokeToken { .. } => "revoke_token",
            Command::CreateJoinToken { .. } => "create_join_token",
            Command::RedeemJoinToken { .. } => "redeem_join_token",
            Command::SetSecret { .. } => "set_secret",
            Command::DeleteSecret { .. } => "delete_secret",
            Command::RotateDataKey { .. } => "rotate_data_key",
            Command::SetRetention { .. } => "set_retention",
            Command::ExpireHistory { .. } => "expire_history",
            Command::PutRepository { .. } => "put_repository",
            Command::RemoveRepository { .. } => "remove_repository",
            Command::RecordDelivery { .. } => "record_delivery",
            Command::StatusReported { .. } => "status_reported",
            Command::PutSchedule { .. } => "put_schedule",
            Command::PutNotifier { .. } => "put_notifier",
            Command::RemoveNotifier { .. } => "remove_notifier",
            Command::NotificationsSent { .. } => "notifications_sent",
            Command::RemoveSchedule { .. } => "remove_schedule",
            Command::FireSchedule { .. } => "fire_schedule",
            Command::ApproveJob { .. } => "approve_job",
            Command::ArtifactStored { .. } => "artifact_stored",
            Command::ArtifactsFailed { .. } => "artifacts_failed",
            Command::ExpireArtifacts { .. } => "expire_artifacts",
            Command::CacheSaved { .. } => "cache_saved",
            Command::CacheRestored { .. } => "cache_restored",
            Command::ClearCaches { .. } => "clear_caches",
        }
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}ms", self.command.kind(), self.now_ms)
    }
}
