//! Events emitted by `apply`. Every replica emits the same events for the same entry; the
//! leader's effects executor acts on them, every node streams them to subscribers.

use crate::{FailureReason, FencingToken, JobId, PipelineId, PipelineState, Resources};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// Internally tagged for readable JSON streams; events are never persisted with bincode.
#[serde(tag = "type")]
pub enum Event {
    PipelineRequested { pipeline: PipelineId, name: String, tenant: String },
    JobRequested { job: JobId, pipeline: PipelineId, name: String },
    AssignmentCreated { job: JobId, attempt: u32, pool: String, fencing: FencingToken, resources: Resources },
    WorkerCreated { job: JobId, attempt: u32, worker_id: String },
    JobStarted { job: JobId, attempt: u32 },
    StepStarted { job: JobId, attempt: u32, step: u32 },
    StepCompleted { job: JobId, attempt: u32, step: u32 },
    StepFailed { job: JobId, attempt: u32, step: u32, exit_code: i32 },
    JobCompleted { job: JobId, attempt: u32 },
    JobFailed { job: JobId, attempt: u32, reason: FailureReason },
    JobCancelled { job: JobId, attempt: u32 },
    /// The worker was lost; the job waits for it to be confirmed gone.
    JobTerminated { job: JobId, attempt: u32, reason: String },
    JobRetrying { job: JobId, attempt: u32, not_before_ms: u64 },
    /// The leader must stop this worker (cancel, timeout, loss); idempotent by fencing token.
    WorkerStopRequested { job: JobId, attempt: u32, fencing: FencingToken },
    WorkerFailed { job: JobId, attempt: u32, reason: String },
    /// The worker is gone and its capacity released.
    WorkerTerminated { job: JobId, attempt: u32, pool: String },
    LogAppended { job: JobId, attempt: u32, offset: u64, len: u64, truncated: bool },
    PipelineCompleted { pipeline: PipelineId, state: PipelineState },
    PoolRegistered { pool: String },
    PoolRemoved { pool: String },
    CapacityUpdated { pool: String, capacity: Resources, allocated: Resources, workers: u32, draining: bool },
    QuotaUpdated { tenant: String },
    LimitsUpdated,
}

impl Event {
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
        }
    }
}
