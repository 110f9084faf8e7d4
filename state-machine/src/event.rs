//! Events emitted by `apply`. Every replica emits the same events for the same entry; the
//! leader's effects executor acts on them, every node streams them to subscribers.

use crate::{FailureReason, FencingToken, JobId, PipelineId, PipelineState, Resources, Role, TokenId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// Internally tagged for readable JSON streams; events are never persisted with bincode.
#[serde(tag = "type")]
pub enum Event {
    PipelineRequested {
        pipeline: PipelineId,
        name: String,
        tenant: String,
    },
    JobRequested {
        job: JobId,
        pipeline: PipelineId,
        name: String,
    },
    AssignmentCreated {
        job: JobId,
        attempt: u32,
        pool: String,
        fencing: FencingToken,
        resources: Resources,
    },
    WorkerCreated {
        job: JobId,
        attempt: u32,
        worker_id: String,
    },
    JobStarted {
        job: JobId,
        attempt: u32,
    },
    StepStarted {
        job: JobId,
        attempt: u32,
        step: u32,
    },
    StepCompleted {
        job: JobId,
        attempt: u32,
        step: u32,
    },
    StepFailed {
        job: JobId,
        attempt: u32,
        step: u32,
        exit_code: i32,
    },
    JobCompleted {
        job: JobId,
        attempt: u32,
    },
    JobFailed {
        job: JobId,
        attempt: u32,
        reason: FailureReason,
    },
    JobCancelled {
        job: JobId,
        attempt: u32,
    },
    /// The worker was lost; the job waits for it to be confirmed gone.
    JobTerminated {
        job: JobId,
        attempt: u32,
        reason: String,
    },
    JobRetrying {
        job: JobId,
        attempt: u32,
        not_before_ms: u64,
    },
    /// A manual job approved: it may run once placed.
    JobApproved {
        job: JobId,
        by: String,
    },
    /// A job that will not run: its condition was false, or a job it needs was skipped.
    JobSkipped {
        job: JobId,
        reason: String,
    },
    /// The leader must stop this worker (cancel, timeout, loss); idempotent by fencing token.
    WorkerStopRequested {
        job: JobId,
        attempt: u32,
        fencing: FencingToken,
    },
    WorkerFailed {
        job: JobId,
        attempt: u32,
        reason: String,
    },
    /// The worker is gone and its capacity released.
    WorkerTerminated {
        job: JobId,
        attempt: u32,
        pool: String,
    },
    LogAppended {
        job: JobId,
        attempt: u32,
        offset: u64,
        len: u64,
        truncated: bool,
    },
    PipelineCompleted {
        pipeline: PipelineId,
        state: PipelineState,
    },
    PoolRegistered {
        pool: String,
    },
    PoolRemoved {
        pool: String,
    },
    CapacityUpdated {
        pool: String,
        capacity: Resources,
        allocated: Resources,
        workers: u32,
        draining: bool,
    },
    QuotaUpdated {
        tenant: String,
    },
    LimitsUpdated,
    /// An API token was created (never its secret): the audit trail of who may do what.
    AuthGranted {
        token: TokenId,
        name: String,
        role: Role,
        tenants: BTreeSet<String>,
    },
    /// An API token was revoked.
    AuthRevoked {
        token: TokenId,
    },
    /// A secret got a new value (never the value, not even sealed).
    SecretSet {
        tenant: String,
        name: String,
        version: u64,
    },
    SecretDeleted {
        tenant: String,
        name: String,
    },
    /// The retention policy of `tenant` (or the default, `None`) was set or lifted.
    RetentionUpdated {
        tenant: Option<String>,
    },
    /// Retention removed a finished pipeline with its `jobs` jobs and their output.
    PipelineRemoved {
        pipeline: PipelineId,
        tenant: String,
        jobs: u32,
    },
    /// Retention removed the output of a finished pipeline's jobs (`bytes` in all).
    OutputRemoved {
        pipeline: PipelineId,
        tenant: String,
        bytes: u64,
    },
    /// The files a job's `artifacts` name were kept (`size_bytes` compressed).
    ArtifactStored {
        job: JobId,
        attempt: u32,
        size_bytes: u64,
    },
    /// A job's artifacts were removed (expired, or their pipeline removed).
    ArtifactRemoved {
        job: JobId,
        size_bytes: u64,
    },
    /// A job saved its tenant's cache `key` (`size_bytes` compressed).
    CacheSaved {
        job: JobId,
        tenant: String,
        key: String,
        size_bytes: u64,
    },
    /// A job's cache was not saved, and why (too large for the budget, files unreadable, a
    /// provider that cannot collect them). The job's own outcome does not change.
    CacheNotSaved {
        job: JobId,
        reason: String,
    },
    /// A tenant's cache was forgotten: `evicted` to make room within the tenant's budget
    /// (least recently used first), or cleared by someone.
    CacheRemoved {
        tenant: String,
        key: String,
        size_bytes: u64,
        evicted: bool,
    },
    /// An authenticated caller changed something: the token (never its secret), what it did
    /// (the command's kind) and to what (`audit.rs`). Follows the change's own events.
    Audited {
        token: TokenId,
        action: String,
        target: String,
    },
}

/// What an event is about: the kind of object and its id, as used in stream subjects
/// (`<category>.<id>.<event>`) and filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSubject {
    /// `pipeline`, `job`, `worker`, `capacity` or `auth`.
    pub category: &'static str,
    /// `p3`, `j12`, `j12-a2` (a job's attempt), a pool or tenant name, `limits`, or a token
    /// (`t4`).
    pub id: String,
}

impl Event {
    /// Every event type name, as `kind()` returns them.
    pub const KINDS: [&'static str; 38] = [
        "PipelineRequested",
        "JobRequested",
        "AssignmentCreated",
        "WorkerCreated",
        "JobStarted",
        "StepStarted",
        "StepCompleted",
        "StepFailed",
        "JobCompleted",
        "JobFailed",
        "JobCancelled",
        "JobTerminated",
        "JobRetrying",
        "JobApproved",
        "JobSkipped",
        "WorkerStopRequested",
        "WorkerFailed",
        "WorkerTerminated",
        "LogAppended",
        "PipelineCompleted",
        "PoolRegistered",
        "PoolRemoved",
        "CapacityUpdated",
        "QuotaUpdated",
        "LimitsUpdated",
        "AuthGranted",
        "AuthRevoked",
        "SecretSet",
        "SecretDeleted",
        "Audited",
        "RetentionUpdated",
        "PipelineRemoved",
        "OutputRemoved",
        "ArtifactStored",
        "ArtifactRemoved",
        "CacheSaved",
        "CacheNotSaved",
        "CacheRemoved",
    ];

    /// The job this event concerns, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Event::JobRequested { job, .. }
            | Event::AssignmentCreated { job, .. }
            | Event::WorkerCreated { job, .. }
            | Event::JobStarted { job, .. }
            | Event::StepStarted { job, .. }
            | Event::StepCompleted { job, .. }
            | Event::StepFailed { job, .. }
            | Event::JobCompleted { job, .. }
            | Event::JobFailed { job, .. }
            | Event::JobCancelled { job, .. }
            | Event::JobTerminated { job, .. }
            | Event::JobRetrying { job, .. }
            | Event::JobApproved { job, .. }
            | Event::JobSkipped { job, .. }
            | Event::WorkerStopRequested { job, .. }
            | Event::WorkerFailed { job, .. }
            | Event::WorkerTerminated { job, .. }
            | Event::LogAppended { job, .. }
            | Event::ArtifactStored { job, .. }
            | Event::ArtifactRemoved { job, .. }
            | Event::CacheSaved { job, .. }
            | Event::CacheNotSaved { job, .. } => Some(*job),
            Event::PipelineRequested { .. }
            | Event::PipelineCompleted { .. }
            | Event::PoolRegistered { .. }
            | Event::PoolRemoved { .. }
            | Event::CapacityUpdated { .. }
            | Event::QuotaUpdated { .. }
            | Event::LimitsUpdated
            | Event::AuthGranted { .. }
            | Event::AuthRevoked { .. }
            | Event::SecretSet { .. }
            | Event::SecretDeleted { .. }
            | Event::Audited { .. }
            | Event::RetentionUpdated { .. }
            | Event::PipelineRemoved { .. }
            | Event::OutputRemoved { .. }
            | Event::CacheRemoved { .. } => None,
        }
    }

    /// The pipeline this event names itself (job events name only their job).
    pub fn pipeline(&self) -> Option<PipelineId> {
        match self {
            Event::PipelineRequested { pipeline, .. }
            | Event::JobRequested { pipeline, .. }
            | Event::PipelineCompleted { pipeline, .. }
            | Event::PipelineRemoved { pipeline, .. }
            | Event::OutputRemoved { pipeline, .. } => Some(*pipeline),
            _ => None,
        }
    }

    /// The object this event is about, for stream subjects.
    pub fn subject(&self) -> EventSubject {
        let (category, id) = match self {
            Event::PipelineRequested { pipeline, .. }
            | Event::PipelineCompleted { pipeline, .. }
            | Event::PipelineRemoved { pipeline, .. }
            | Event::OutputRemoved { pipeline, .. } => ("pipeline", pipeline.to_string()),
            Event::WorkerCreated { job, attempt, .. }
            | Event::WorkerStopRequested { job, attempt, .. }
            | Event::WorkerFailed { job, attempt, .. }
            | Event::WorkerTerminated { job, attempt, .. } => ("worker", format!("{job}-a{attempt}")),
            Event::PoolRegistered { pool } | Event::PoolRemoved { pool } | Event::CapacityUpdated { pool, .. } => {
                ("capacity", pool.clone())
            }
            Event::QuotaUpdated { tenant } => ("capacity", tenant.clone()),
            Event::CacheRemoved { tenant, key, .. } => ("capacity", format!("cache-{tenant}-{key}")),
            Event::LimitsUpdated => ("capacity", "limits".to_string()),
            Event::RetentionUpdated { tenant } => (
                "capacity",
                format!("retention-{}", tenant.as_deref().unwrap_or("default")),
            ),
            Event::AuthGranted { token, .. } | Event::AuthRevoked { token } | Event::Audited { token, .. } => {
                ("auth", token.to_string())
            }
            Event::SecretSet { tenant, name, .. } | Event::SecretDeleted { tenant, name } => {
                ("auth", format!("secret-{tenant}-{name}"))
            }
            other => ("job", other.job().map(|j| j.to_string()).unwrap_or_default()),
        };
        EventSubject { category, id }
    }

    /// The event's type name, as used in filters and subjects.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PipelineRequested { .. } => "PipelineRequested",
            Event::JobRequested { .. } => "JobRequested",
            Event::AssignmentCreated { .. } => "AssignmentCreated",
            Event::WorkerCreated { .. } => "WorkerCreated",
            Event::JobStarted { .. } => "JobStarted",
            Event::StepStarted { .. } => "StepStarted",
            Event::StepCompleted { .. } => "StepCompleted",
            Event::StepFailed { .. } => "StepFailed",
            Event::JobCompleted { .. } => "JobCompleted",
            Event::JobFailed { .. } => "JobFailed",
            Event::JobCancelled { .. } => "JobCancelled",
            Event::JobTerminated { .. } => "JobTerminated",
            Event::JobRetrying { .. } => "JobRetrying",
            Event::JobApproved { .. } => "JobApproved",
            Event::JobSkipped { .. } => "JobSkipped",
            Event::WorkerStopRequested { .. } => "WorkerStopRequested",
            Event::WorkerFailed { .. } => "WorkerFailed",
            Event::WorkerTerminated { .. } => "WorkerTerminated",
            Event::LogAppended { .. } => "LogAppended",
            Event::PipelineCompleted { .. } => "PipelineCompleted",
            Event::PoolRegistered { .. } => "PoolRegistered",
            Event::PoolRemoved { .. } => "PoolRemoved",
            Event::CapacityUpdated { .. } => "CapacityUpdated",
            Event::QuotaUpdated { .. } => "QuotaUpdated",
            Event::LimitsUpdated => "LimitsUpdated",
            Event::AuthGranted { .. } => "AuthGranted",
            Event::AuthRevoked { .. } => "AuthRevoked",
            Event::SecretSet { .. } => "SecretSet",
            Event::SecretDeleted { .. } => "SecretDeleted",
            Event::Audited { .. } => "Audited",
            Event::RetentionUpdated { .. } => "RetentionUpdated",
            Event::PipelineRemoved { .. } => "PipelineRemoved",
            Event::OutputRemoved { .. } => "OutputRemoved",
            Event::ArtifactStored { .. } => "ArtifactStored",
            Event::ArtifactRemoved { .. } => "ArtifactRemoved",
            Event::CacheSaved { .. } => "CacheSaved",
            Event::CacheNotSaved { .. } => "CacheNotSaved",
            Event::CacheRemoved { .. } => "CacheRemoved",
        }
    }

    /// Whether only admins may read it (the audit trail of tokens and secrets).
    pub fn is_audit(&self) -> bool {
        matches!(
            self,
            Event::AuthGranted { .. }
                | Event::AuthRevoked { .. }
                | Event::SecretSet { .. }
                | Event::SecretDeleted { .. }
                | Event::Audited { .. }
        )
    }
}
