//! Bounds on everything the replicated state accepts.
//!
//! Limits live inside the replicated state (changed only by `Command::UpdateLimits`), never in
//! a node's local configuration: two replicas with different limits would apply the same log
//! differently.
//!
//! `Limits::CEILING` bounds the limits themselves. No `UpdateLimits` can raise a limit past its
//! ceiling, and the ceilings are chosen so that no sum the state keeps can overflow: every
//! allocation lives in a pool, a pool offers at most `max_resources`, and there are at most
//! `max_pools` pools, so `CEILING.max_pools * CEILING.max_resources` must fit the resource
//! vector's integer types (checked by a unit test below). Arithmetic stays checked all the
//! same; the ceilings make the checks' failure branches unreachable in practice.

use crate::{Resources, SpecError};
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
    /// Largest request of one job and largest capacity of one pool, per dimension.
    pub max_resources: Resources,
    /// Most workers one pool may run at once.
    pub max_workers_per_pool: u32,
    /// Largest pipeline after matrix expansion, in bytes as `JobSpec::size_bytes` counts them
    /// (every string plus a fixed overhead per item). Checked before anything is expanded, so a
    /// small submission cannot become a large state on every replica.
    pub max_pipeline_bytes: u64,
    /// How long a client session is remembered after its last request (by the state's clock).
    /// A retry must come within it; retries come within a proposal's timeout, seconds.
    pub session_ttl_ms: u64,
    /// Most client sessions held; past it the least recently used is forgotten.
    pub max_sessions: usize,
    /// Largest artifact one job may keep (its compressed archive), in bytes.
    #[serde(default = "Limits::default_max_artifact_bytes_per_job")]
    pub max_artifact_bytes_per_job: u64,
    /// Most bytes of artifacts one tenant may keep at once.
    #[serde(default = "Limits::default_max_artifact_bytes_per_tenant")]
    pub max_artifact_bytes_per_tenant: u64,
    /// Most bytes of caches one tenant may keep at once; saving past it evicts the tenant's
    /// least recently used caches. 0 keeps no cache.
    #[serde(default = "Limits::default_max_cache_bytes_per_tenant")]
    pub max_cache_bytes_per_tenant: u64,
    /// Most caches one tenant may keep; saving one more evicts the least recently used (a
    /// budget of many tiny caches would otherwise grow the state).
    #[serde(default = "Limits::default_max_caches_per_tenant")]
    pub max_caches_per_tenant: u64,
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
        // 100,000 cores, 1 PiB of memory, 10,000 GPUs.
        max_resources: Resources {
            cpu_millis: 100_000_000,
            memory_mib: 1 << 30,
            gpus: 10_000,
        },
        max_workers_per_pool: 10_000,
        max_pipeline_bytes: 4 * 1024 * 1024,
        session_ttl_ms: 15 * 60 * 1000,
        max_sessions: 8192,
        max_artifact_bytes_per_job: 1 << 30,
        max_artifact_bytes_per_tenant: 20 << 30,
        max_cache_bytes_per_tenant: 10 << 30,
        max_caches_per_tenant: 10_000,
    };

    /// The largest value `UpdateLimits` may set for each limit.
    pub const CEILING: Limits = Limits {
        max_name_bytes: 1024,
        max_value_bytes: 64 * 1024,
        max_jobs_per_pipeline: 100_000,
        max_steps_per_job: 10_000,
        max_step_bytes: 1024 * 1024,
        max_env_per_job: 10_000,
        max_labels: 1024,
        max_needs_per_job: 10_000,
        max_retries: 1000,
        max_timeout_ms: 365 * 24 * 3600 * 1000,
        max_backoff_ms: 7 * 24 * 3600 * 1000,
        max_priority_abs: 1_000_000,
        max_log_bytes_per_job: 1 << 30,
        max_log_chunk_bytes: 4 * 1024 * 1024,
        idempotency_ttl_ms: 30 * 24 * 3600 * 1000,
        max_idempotency_key_bytes: 1024,
        max_pools: 100_000,
        max_plan_placements: 100_000,
        max_resources: Resources {
            cpu_millis: 1 << 40,
            memory_mib: 1 << 40,
            gpus: 40_000,
        },
        max_workers_per_pool: 40_000,
        max_pipeline_bytes: 32 * 1024 * 1024,
        session_ttl_ms: 24 * 3600 * 1000,
        max_sessions: 1 << 20,
        max_artifact_bytes_per_job: 64 << 30,
        max_artifact_bytes_per_tenant: 1 << 50,
        max_cache_bytes_per_tenant: 1 << 50,
        max_caches_per_tenant: 1_000_000,
    };

    fn default_max_artifact_bytes_per_job() -> u64 {
        Self::DEFAULT.max_artifact_bytes_per_job
    }

    fn default_max_artifact_bytes_per_tenant() -> u64 {
        Self::DEFAULT.max_artifact_bytes_per_tenant
    }

    fn default_max_cache_bytes_per_tenant() -> u64 {
        Self::DEFAULT.max_cache_bytes_per_tenant
    }

    fn default_max_caches_per_tenant() -> u64 {
        Self::DEFAULT.max_caches_per_tenant
    }

    /// Checks every limit against zero (where zero would refuse everything) and its ceiling.
    pub fn validate(&self) -> Result<(), SpecError> {
        let c = &Limits::CEILING;
        let checks: [(&str, u64, u64, bool); 29] = [
            (
                "max_name_bytes",
                self.max_name_bytes as u64,
                c.max_name_bytes as u64,
                true,
            ),
            (
                "max_value_bytes",
                self.max_value_bytes as u64,
                c.max_value_bytes as u64,
                false,
            ),
            (
                "max_jobs_per_pipeline",
                self.max_jobs_per_pipeline as u64,
                c.max_jobs_per_pipeline as u64,
                true,
            ),
            (
                "max_steps_per_job",
                self.max_steps_per_job as u64,
                c.max_steps_per_job as u64,
                true,
            ),
            (
                "max_step_bytes",
                self.max_step_bytes as u64,
                c.max_step_bytes as u64,
                true,
            ),
            (
                "max_env_per_job",
                self.max_env_per_job as u64,
                c.max_env_per_job as u64,
                false,
            ),
            ("max_labels", self.max_labels as u64, c.max_labels as u64, false),
            (
                "max_needs_per_job",
                self.max_needs_per_job as u64,
                c.max_needs_per_job as u64,
                false,
            ),
            (
                "max_retries",
                u64::from(self.max_retries),
                u64::from(c.max_retries),
                false,
            ),
            ("max_timeout_ms", self.max_timeout_ms, c.max_timeout_ms, true),
            ("max_backoff_ms", self.max_backoff_ms, c.max_backoff_ms, false),
            (
                "max_priority_abs",
                u64::try_from(self.max_priority_abs).unwrap_or(u64::MAX),
                c.max_priority_abs as u64,
                false,
            ),
            (
                "max_log_bytes_per_job",
                self.max_log_bytes_per_job,
                c.max_log_bytes_per_job,
                false,
            ),
            (
                "max_log_chunk_bytes",
                self.max_log_chunk_bytes as u64,
                c.max_log_chunk_bytes as u64,
                true,
            ),
            (
                "idempotency_ttl_ms",
                self.idempotency_ttl_ms,
                c.idempotency_ttl_ms,
                false,
            ),
            (
                "max_idempotency_key_bytes",
                self.max_idempotency_key_bytes as u64,
                c.max_idempotency_key_bytes as u64,
                true,
            ),
            ("max_pools", self.max_pools as u64, c.max_pools as u64, true),
            (
                "max_plan_placements",
                self.max_plan_placements as u64,
                c.max_plan_placements as u64,
                true,
            ),
            (
                "max_resources.cpu_millis",
                self.max_resources.cpu_millis,
                c.max_resources.cpu_millis,
                true,
            ),
            (
                "max_resources.memory_mib",
                self.max_resources.memory_mib,
                c.max_resources.memory_mib,
                true,
            ),
            (
                "max_resources.gpus",
                u64::from(self.max_resources.gpus),
                u64::from(c.max_resources.gpus),
                false,
            ),
            (
                "max_workers_per_pool",
                u64::from(self.max_workers_per_pool),
                u64::from(c.max_workers_per_pool),
                true,
            ),
            (
                "max_pipeline_bytes",
                self.max_pipeline_bytes,
                c.max_pipeline_bytes,
                true,
            ),
            ("session_ttl_ms", self.session_ttl_ms, c.session_ttl_ms, true),
            ("max_sessions", self.max_sessions as u64, c.max_sessions as u64, true),
            (
                "max_artifact_bytes_per_job",
                self.max_artifact_bytes_per_job,
                c.max_artifact_bytes_per_job,
                false,
            ),
            (
                "max_artifact_bytes_per_tenant",
                self.max_artifact_bytes_per_tenant,
                c.max_artifact_bytes_per_tenant,
                false,
            ),
            (
                "max_cache_bytes_per_tenant",
                self.max_cache_bytes_per_tenant,
                c.max_cache_bytes_per_tenant,
                false,
            ),
            (
                "max_caches_per_tenant",
                self.max_caches_per_tenant,
                c.max_caches_per_tenant,
                true,
            ),
        ];
        for (name, value, ceiling, nonzero) in checks {
            let field = format!("limits.{name}");
            if nonzero && value == 0 {
                return Err(SpecError::Zero { field });
            }
            if value > ceiling {
                let value = i64::try_from(value).unwrap_or(i64::MAX);
                return Err(SpecError::OutOfRange {
                    field,
                    value,
                    min: i64::from(nonzero),
                    max: ceiling as i64,
                });
            }
        }
        Ok(())
    }

    /// Checks one resource vector (a job's request or a pool's capacity) against
    /// `max_resources`, naming the offending field under `at`.
    pub fn check_resources(&self, at: &str, r: &Resources) -> Result<(), SpecError> {
        let max = &self.max_resources;
        let dims = [
            ("cpu_millis", r.cpu_millis, max.cpu_millis),
            ("memory_mib", r.memory_mib, max.memory_mib),
            ("gpus", u64::from(r.gpus), u64::from(max.gpus)),
        ];
        for (name, value, max) in dims {
            if value > max {
                let value = i64::try_from(value).unwrap_or(i64::MAX);
                return Err(SpecError::OutOfRange {
                    field: format!("{at}.{name}"),
                    value,
                    min: 0,
                    max: max as i64,
                });
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_ceiling_are_valid() {
        assert_eq!(Limits::DEFAULT.validate(), Ok(()));
        assert_eq!(Limits::CEILING.validate(), Ok(()));
    }

    /// The sums the state keeps (a tenant's allocation over every pool, a tenant's running
    /// jobs) cannot overflow while every pool is within the ceilings.
    #[test]
    fn ceilings_keep_every_sum_in_range() {
        let c = &Limits::CEILING;
        let pools = c.max_pools as u64;
        assert!(pools.checked_mul(c.max_resources.cpu_millis).is_some());
        assert!(pools.checked_mul(c.max_resources.memory_mib).is_some());
        assert!(u32::try_from(pools * u64::from(c.max_resources.gpus)).is_ok());
        assert!(u32::try_from(pools * u64::from(c.max_workers_per_pool)).is_ok());
    }

    #[test]
    fn a_limit_past_its_ceiling_is_named() {
        let limits = Limits {
            max_jobs_per_pipeline: usize::MAX,
            ..Limits::DEFAULT
        };
        let err = limits.validate().unwrap_err();
        assert_eq!(err.field(), "limits.max_jobs_per_pipeline");
        let limits = Limits {
            max_priority_abs: -1,
            ..Limits::DEFAULT
        };
        assert_eq!(limits.validate().unwrap_err().field(), "limits.max_priority_abs");
        let limits = Limits {
            max_pools: 0,
            ..Limits::DEFAULT
        };
        assert!(matches!(limits.validate(), Err(SpecError::Zero { .. })));
    }
}
