//! Typed reasons `apply` refuses a command. A rejected command changes nothing.

use crate::{ClientId, FencingToken, JobId, JobState, JoinTokenRefusal, PipelineId, Role, SpecError, TokenId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Rejection {
    #[error("invalid input: {0}")]
    Invalid(#[from] SpecError),
    #[error("unknown pipeline {0}")]
    UnknownPipeline(PipelineId),
    /// A request older than the last one its client had applied: its client gave it up.
    #[error("request {seq} of client {client} is older than its last applied request {last_seq}")]
    StaleRequest { client: ClientId, seq: u64, last_seq: u64 },
    #[error("unknown job {0}")]
    UnknownJob(JobId),
    #[error("unknown pool {0:?}")]
    UnknownPool(String),
    #[error("pool {0:?} already exists with a different spec")]
    PoolExists(String),
    #[error("pool {pool:?} still has {workers} live workers")]
    PoolBusy { pool: String, workers: u32 },
    #[error("pool {pool:?} has {allocated} allocated; the new capacity is below that")]
    CapacityBelowAllocated { pool: String, allocated: String },
    #[error("idempotency key {key:?} was used for pipeline {pipeline} with a different spec")]
    IdempotencyKeyReused { key: String, pipeline: PipelineId },
    #[error("job {job} is {state}: {action} is not possible")]
    WrongState {
        job: JobId,
        state: JobState,
        action: String,
    },
    #[error("job {job} may be approved only by a {needed} or above")]
    ApprovalRole { job: JobId, needed: Role },
    #[error("job {job} already finished as {state}")]
    AlreadyFinished { job: JobId, state: JobState },
    #[error("stale fencing token {got} for job {job}")]
    StaleFencing { job: JobId, got: FencingToken },
    #[error("placement for job {job} names attempt {got}, the job is at attempt {current}")]
    StaleAttempt { job: JobId, got: u32, current: u32 },
    #[error("job {job} is not ready to run: {why}")]
    NotReady { job: JobId, why: String },
    #[error("job {job} appears twice in one plan")]
    DuplicatePlacement { job: JobId },
    #[error("pool {pool:?} cannot take job {job} now: {why}")]
    NoCapacity { job: JobId, pool: String, why: String },
    #[error("job {job} cannot be placed: {what} would overflow")]
    Overflow { job: JobId, what: String },
    #[error("tenant {tenant:?} quota does not admit job {job}")]
    QuotaExceeded { job: JobId, tenant: String },
    #[error("batch has {count} commands, more than the limit of {max}")]
    BatchTooLarge { count: usize, max: usize },
    #[error("a {kind} command cannot be part of a batch")]
    NotBatchable { kind: String },
    #[error("plan has {count} placements, more than the limit of {max}")]
    PlanTooLarge { count: usize, max: usize },
    #[error("worker of job {job} is already recorded as {existing:?}")]
    WorkerIdMismatch { job: JobId, existing: String },
    #[error("job {job} has {steps} steps; step {step} does not exist")]
    UnknownStep { job: JobId, step: u32, steps: u32 },
    #[error("job {job}: log chunk at offset {offset} leaves a gap after {expected}")]
    LogGap { job: JobId, offset: u64, expected: u64 },
    #[error("job {job}: output may be skipped only once its log is full")]
    LogNotFull { job: JobId },
    #[error("job {job} has run {elapsed_ms} ms of its {timeout_ms} ms timeout")]
    TimeoutNotReached {
        job: JobId,
        elapsed_ms: u64,
        timeout_ms: u64,
    },
    #[error("unknown token {0}")]
    UnknownToken(TokenId),
    #[error("the cluster's first admin token was created already; an admin creates the others")]
    AlreadyBootstrapped,
    #[error("{count} tokens exist, the most there may be")]
    TooManyTokens { count: usize },
    #[error("{}", .0.describe())]
    JoinTokenRefused(JoinTokenRefusal),
    #[error("{count} live join tokens exist, the most there may be")]
    TooManyJoinTokens { count: usize },
    #[error("{count} tenants are known, the most a quota may be set for; {tenant:?} is not among them")]
    TooManyTenants { count: usize, tenant: String },
    #[error("tenant {tenant:?} has no secret {name:?}")]
    UnknownSecret { tenant: String, name: String },
    #[error("secret {name:?} of tenant {tenant:?} is at version {actual}, not {expected}: it changed meanwhile")]
    SecretChanged {
        tenant: String,
        name: String,
        expected: u64,
        actual: u64,
    },
    /// The data key a value was sealed under is not (or no longer) in the state: the value
    /// must be sealed again under the active key.
    #[error("data key {0} is not in the state (rotated meanwhile?): seal the value again")]
    UnknownDataKey(String),
    #[error(
        "secret {name:?} of tenant {tenant:?} is in use by job {job}, which runs with its value: change it once the job is done (or cancel it)"
    )]
    SecretInUse { tenant: String, name: String, job: JobId },
    #[error("{count} secrets exist, the most there may be")]
    TooManySecrets { count: usize },
    #[error("tenant {tenant:?} has no notifier {name:?}")]
    UnknownNotifier { tenant: String, name: String },
    #[error("{count} notifiers exist for this tenant, the most there may be ({max})")]
    TooManyNotifiers { count: usize, max: usize },
    #[error("tenant {tenant:?} has no schedule {name:?}")]
    UnknownSchedule { tenant: String, name: String },
    #[error("schedule {name:?} is due at {next_due_ms} ms, not {due_ms}: that time was fired already")]
    StaleSchedule {
        name: String,
        due_ms: u64,
        next_due_ms: u64,
    },
    #[error("{count} schedules exist for this tenant, the most there may be ({max})")]
    TooManySchedules { count: usize, max: usize },
    #[error("tenant {tenant:?} has no repository {name:?}")]
    UnknownRepository { tenant: String, name: String },
    #[error("{count} repositories exist here, the most there may be ({max})")]
    TooManyRepositories { count: usize, max: usize },
    #[error("the secrets would take {bytes} bytes sealed, more than the limit of {max}")]
    SecretsTooLarge { bytes: usize, max: usize },
    #[error(
        "{count} data keys are in use, the most there may be: re-seal the secrets (rotate-keys) to retire old ones"
    )]
    TooManyDataKeys { count: usize },
    #[error("the artifacts of job {job} take {size_bytes} bytes, past {limit}")]
    ArtifactTooLarge { job: JobId, size_bytes: u64, limit: String },
    #[error("tenant {tenant:?} has no cache {key:?}")]
    UnknownCache { tenant: String, key: String },
}
