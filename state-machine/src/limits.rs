//! Bounds on everything the replicated state accepts.
//!
//! Limits live inside the replicated state (changed only by `Command::UpdateLimits`), never in
//! a node's local configuration: two replicas with different limits would apply the same log
//! differently.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Longest name of a pipeline, job, pool, tenant, label or env key, in bytes.
    pub max_name_bytes: usize,
    /// Longest label value, env value or image reference, in bytes.
    pub max_value_bytes: usize,
    pub max_jobs_per_pipeline: usize,
    pub max_steps_per_job: usize,
    /// Longest single script step, in bytes.
    pub max_step_bytes: usize,
    pub max_env_per_job: usize,
    pub max_labels: usize,
    pub max_needs_per_job: usize,
    pub max_retries: u32,
    pub max_timeout_ms: u64,
    pub max_backoff_ms: u64,
    /// Highest accepted priority; the lowest is its negation.
    pub max_priority_abs: i32,
    /// Log bytes kept per job; output past the cap is dropped and the truncation noted.
    pub max_log_bytes_per_job: u64,
    /// Largest log chunk accepted in one command, in bytes.
    pub max_log_chunk_bytes: usize,
    /// How long an idempotency key is remembered after its first use.
    pub idempotency_ttl_ms: u64,
    pub max_idempotency_key_bytes: usize,
    pub max_pools: usize,
    /// Most placements one `ApplyPlan` may carry.
    pub max_plan_placements: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_name_bytes: 128,
        max_value_bytes: 1024,
        max_jobs_per_pipeline: 1000,
        max_steps_per_job: 256,
        max_step_bytes: 64 * 1024,
        max_env_per_job: 256,
        max_labels: 64,
        max_needs_per_job: 256,
        max_retries: 10,
        max_timeout_ms: 7 * 24 * 3600 * 1000,
        max_backoff_ms: 3600 * 1000,
        max_priority_abs: 1000,
        max_log_bytes_per_job: 4 * 1024 * 1024,
        max_log_chunk_bytes: 256 * 1024,
        idempotency_ttl_ms: 24 * 3600 * 1000,
        max_idempotency_key_bytes: 255,
        max_pools: 10_000,
        max_plan_placements: 10_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
