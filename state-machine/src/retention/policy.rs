//! How long a tenant's finished work is kept: the replicated retention policy.
//!
//! A CI system's history is most of its data and most of it is never read again; a policy
//! bounds it. Each tenant may have its own, and a cluster default covers the tenants without
//! one. Finished pipelines go, with their jobs and output, once older than `max_age_ms` or
//! past the newest `max_pipelines` of their tenant; output alone may go sooner
//! (`output_max_age_ms`), leaving the record of what ran. A policy may also set how much of
//! each job's output is kept at all (`output_max_bytes_per_job`, in place of the cluster's
//! `Limits::max_log_bytes_per_job`): the bytes past it never enter the log.

use crate::SpecError;
use serde::{Deserialize, Serialize};

/// Longest age any of a policy's durations may name: about 100 years, which keeps every sum
/// of a finish time and an age far inside `u64`.
pub const MAX_RETENTION_AGE_MS: u64 = 100 * 365 * 24 * 3_600_000;

/// Most tenants with a policy of their own (the same bound as tenants with a quota).
pub const MAX_RETENTION_TENANTS: usize = crate::MAX_QUOTA_TENANTS;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// A finished pipeline is removed this long after it finished.
    #[serde(
        default,
        alias = "max_age",
        deserialize_with = "crate::spec::duration_ms::deserialize_option"
    )]
    pub max_age_ms: Option<u64>,
    /// At most this many finished pipelines of the tenant are kept; the oldest go first.
    #[serde(default)]
    pub max_pipelines: Option<u64>,
    /// The output of a finished pipeline's jobs is removed this long after it finished.
    #[serde(
        default,
        alias = "output_max_age",
        deserialize_with = "crate::spec::duration_ms::deserialize_option"
    )]
    pub output_max_age_ms: Option<u64>,
    /// Output bytes kept per job of the tenant (past them the output is dropped and the
    /// truncation noted); absent: the cluster's `max_log_bytes_per_job`. At most
    /// `Limits::CEILING.max_log_bytes_per_job`.
    #[serde(default)]
    pub output_max_bytes_per_job: Option<u64>,
}

impl RetentionPolicy {
    /// A policy must bound something, and every age must be within `MAX_RETENTION_AGE_MS`.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.max_age_ms.is_none()
            && self.max_pipelines.is_none()
            && self.output_max_age_ms.is_none()
            && self.output_max_bytes_per_job.is_none()
        {
            // "policy: must not be empty": it sets none of max_age_ms, max_pipelines,
            // output_max_age_ms, output_max_bytes_per_job (removing a policy is its own
            // command).
            return Err(SpecError::Empty { field: "policy".into() });
        }
        let max_bytes = crate::Limits::CEILING.max_log_bytes_per_job;
        if let Some(bytes) = self.output_max_bytes_per_job
            && bytes > max_bytes
        {
            return Err(SpecError::OutOfRange {
                field: "output_max_bytes_per_job".into(),
                value: i64::try_from(bytes).unwrap_or(i64::MAX),
                min: 0,
                max: max_bytes as i64,
            });
        }
        for (field, value) in [
            ("max_age_ms", self.max_age_ms),
            ("output_max_age_ms", self.output_max_age_ms),
        ] {
            if let Some(ms) = value
                && ms > MAX_RETENTION_AGE_MS
            {
                return Err(SpecError::OutOfRange {
                    field: field.into(),
                    value: i64::try_from(ms).unwrap_or(i64::MAX),
                    min: 0,
                    max: MAX_RETENTION_AGE_MS as i64,
                });
            }
        }
        Ok(())
    }

    /// Whether a pipeline that finished at `finished_at_ms` is past `max_age_ms` at `now_ms`.
    pub fn pipeline_expired(&self, finished_at_ms: u64, now_ms: u64) -> bool {
        self.max_age_ms
            .is_some_and(|age| finished_at_ms.saturating_add(age) <= now_ms)
    }

    /// Whether the output of a pipeline that finished at `finished_at_ms` is past its age.
    pub fn output_expired(&self, finished_at_ms: u64, now_ms: u64) -> bool {
        self.output_max_age_ms
            .is_some_and(|age| finished_at_ms.saturating_add(age) <= now_ms)
    }

    /// Whether a tenant keeping `kept` finished pipelines has more than `max_pipelines`.
    pub fn over_count(&self, kept: usize) -> bool {
        self.max_pipelines.is_some_and(|max| kept as u64 > max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_policy_and_an_age_past_the_ceiling_are_refused() {
        assert!(RetentionPolicy::default().validate().is_err());
        let long = RetentionPolicy {
            output_max_age_ms: Some(MAX_RETENTION_AGE_MS + 1),
            ..RetentionPolicy::default()
        };
        assert!(matches!(long.validate(), Err(SpecError::OutOfRange { field, .. }) if field == "output_max_age_ms"));
        let big = RetentionPolicy {
            output_max_bytes_per_job: Some(crate::Limits::CEILING.max_log_bytes_per_job + 1),
            ..RetentionPolicy::default()
        };
        assert!(
            matches!(big.validate(), Err(SpecError::OutOfRange { field, .. }) if field == "output_max_bytes_per_job")
        );
        let capped = RetentionPolicy {
            output_max_bytes_per_job: Some(100 << 20),
            ..RetentionPolicy::default()
        };
        assert!(capped.validate().is_ok(), "a cap alone is a policy");
        let ok = RetentionPolicy {
            max_pipelines: Some(0),
            ..RetentionPolicy::default()
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn durations_read_with_units_from_json_and_as_integers_from_bincode() {
        let p: RetentionPolicy = serde_json::from_str(r#"{"max_age": "30d", "output_max_age_ms": 60000}"#).unwrap();
        assert_eq!(p.max_age_ms, Some(30 * 86_400_000));
        assert_eq!(p.output_max_age_ms, Some(60_000));
        assert_eq!(p.max_pipelines, None);
        assert!(serde_json::from_str::<RetentionPolicy>(r#"{"max_age": "30 parsecs"}"#).is_err());
        assert!(serde_json::from_str::<RetentionPolicy>(r#"{"keep": 1}"#).is_err());
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&p, config).unwrap();
        let back: RetentionPolicy = bincode::serde::decode_from_slice(&bytes, config).unwrap().0;
        assert_eq!(back, p);
    }

    #[test]
    fn ages_expire_at_their_millisecond_and_counts_past_their_bound() {
        let p = RetentionPolicy {
            max_age_ms: Some(1_000),
            max_pipelines: Some(2),
            output_max_age_ms: Some(u64::MAX),
            output_max_bytes_per_job: None,
        };
        assert!(!p.pipeline_expired(5_000, 5_999));
        assert!(p.pipeline_expired(5_000, 6_000));
        assert!(!p.output_expired(5_000, u64::MAX - 1), "saturates instead of wrapping");
        assert!(!p.over_count(2));
        assert!(p.over_count(3));
    }
}
