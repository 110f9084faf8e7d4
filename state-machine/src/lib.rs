//! Flotilla's replicated domain, kept pure: no async runtime, no I/O, no clock, no randomness.
//!
//! Everything that must be identical on every replica lives here: the types (pipelines, jobs,
//! pools, tenants, assignments), the closed set of `Command`s, `State::apply` that turns a
//! committed command into a `Response` and `Event`s, the invariants, and the scheduler.
//! Time, ids of the log and randomness enter only through the command (`Proposal::now_ms`,
//! `ApplyContext`, jitter fields), stamped by the node that proposes it.

mod apply;
mod archive;
mod artifact;
mod assignment;
mod audit;
mod cache;
mod command;
mod disk;
mod event;
mod event_id;
mod ids;
mod invariants;
mod job;
mod job_state;
mod join_token;
mod limits;
pub mod notifier;
mod packed;
mod pending_queue;
mod pipeline;
mod pool;
mod rejection;
pub mod repository;
pub mod rerun;
mod resources;
mod response;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod secret;
mod session;
pub mod source;
mod spec;
mod state;
mod state_index;
pub mod status_outbox;
mod tenant;
mod tenant_names;
mod token;

pub use apply::MAX_EXPIRE_ARTIFACTS;
pub use archive::{Archive, ArchivedPipeline};
pub use artifact::{ArtifactRecord, Artifacts, DIGEST_HEX_LEN, is_digest};
pub use assignment::{Assignment, FencingToken};
pub use cache::{AttemptCache, CacheRecord, CacheSave, Caches};
pub use command::{ApplyContext, Command, MAX_BATCH_COMMANDS, Placement, Proposal, ScheduledRun};
pub use disk::{
    ArchivedRecords, DiscardDisk, DiskSink, DiskWrite, MemoryDisk, complete_approval, complete_cancel,
    complete_submission, refuse_reused_key,
};
pub use event::{Event, EventSubject};
pub use event_id::{EventId, ParseEventIdError};
pub use ids::{JobId, PipelineId};
pub use invariants::InvariantViolation;
pub use job::{AttemptOutcome, AttemptRecord, FailureReason, Gate, Job};
pub use job_state::JobState;
pub use join_token::{JoinTokenRecord, JoinTokenRefusal, MAX_JOIN_TOKEN_TTL_MS, MAX_JOIN_TOKENS};
pub use limits::Limits;
pub use packed::{BLOCK_ENTRIES, PackedMap, PackedSet};
pub use pending_queue::{PendingQueue, QueueKey, TenantRun};
pub use pipeline::{Pipeline, PipelineState};
pub use pool::{Pool, PoolSpec, ProviderKind, UnfitNow};
pub use rejection::Rejection;
pub use repository::{Delivery, DeliveryOutcome, Forge, Repository, RepositorySpec};
pub use resources::Resources;
pub use response::{AcceptedPlacement, JobRef, RejectedPlacement, Response};
pub use secret::{SealedValue, SecretRecord, WrappedDataKey};
pub use session::{ClientId, ClientRequest, Sessions};
pub use source::{Source, SourceEvent};
pub use spec::{
    ArtifactsSpec, ArtifactsWhen, CONDITION_FUEL_PER_PIPELINE, CachePolicy, CacheSpec, Condition, Expanded, Fuel,
    JobSpec, MAX_ARTIFACT_EXPIRY_MS, MAX_ARTIFACT_PATH_BYTES, MAX_ARTIFACT_PATHS, MAX_CACHE_KEY_BYTES,
    MAX_CACHE_KEY_FILES, MAX_CACHE_PATHS, MAX_CONDITION_BYTES, MAX_CONDITION_DEPTH, OutOfFuel, PipelineSpec,
    RetryPolicy, SpecError, StringMap, cache_key_problem,
};
pub use state::State;
pub use state_index::StateIndex;
pub use tenant::{MAX_QUOTA_TENANTS, Quota, Tenant};
pub use token::{MAX_TOKEN_TENANTS, MAX_TOKENS, Role, TokenGrant, TokenId, TokenRecord};
