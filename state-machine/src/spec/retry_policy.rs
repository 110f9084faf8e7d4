//! How often a failed job is tried again and how long it waits in between.
//!
//! The wait is exponential with "equal jitter": half of the capped exponential delay is fixed,
//! the other half scaled by a jitter the proposer draws and puts in the command, so `apply`
//! stays deterministic.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts after the first; 0 means never retry (`max` in files).
    #[serde(default, alias = "max")]
    pub max_retries: u32,
    /// Delay before the first retry (`backoff` in files, milliseconds or `"10s"`).
    #[serde(
        default = "RetryPolicy::default_backoff_base_ms",
        alias = "backoff",
        deserialize_with = "super::duration_ms::deserialize"
    )]
    pub backoff_base_ms: u64,
    /// Ceiling of the exponential delay (`max_backoff` in files).
    #[serde(
        default = "RetryPolicy::default_backoff_max_ms",
        alias = "max_backoff",
        deserialize_with = "super::duration_ms::deserialize"
    )]
    pub backoff_max_ms: u64,
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        max_retries: 0,
        backoff_base_ms: 1_000,
        backoff_max_ms: 60_000,
    };

    fn default_backoff_base_ms() -> u64 {
        Self::NONE.backoff_base_ms
    }

    fn default_backoff_max_ms() -> u64 {
        Self::NONE.backoff_max_ms
    }

    /// Delay before attempt `next_attempt` (2 for the first retry). `jitter_permille` is drawn by
    /// the proposer in `0..=1000`; larger values are clamped.
    pub fn backoff_ms(&self, next_attempt: u32, jitter_permille: u16) -> u64 {
        let retry_number = next_attempt.saturating_sub(2).min(63);
        let exp = self.backoff_base_ms.saturating_mul(1u64 << retry_number.min(32));
        let capped = exp.min(self.backoff_max_ms);
        let half = capped / 2;
        let jitter = u128::from(jitter_permille.min(1000));
        // In u128: `capped` may be as large as a `u64`, and times 1000 it would overflow.
        let spread = (u128::from(capped - half) * jitter / 1000) as u64;
        half + spread
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_with_bounded_jitter() {
        let p = RetryPolicy {
            max_retries: 5,
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
        };
        assert_eq!(p.backoff_ms(2, 1000), 100);
        assert_eq!(p.backoff_ms(3, 1000), 200);
        assert_eq!(p.backoff_ms(4, 1000), 400);
        assert_eq!(p.backoff_ms(6, 1000), 1000);
        assert_eq!(p.backoff_ms(60, 1000), 1000);
        assert_eq!(p.backoff_ms(3, 0), 100);
        assert_eq!(p.backoff_ms(3, 500), 150);
        assert_eq!(p.backoff_ms(3, u16::MAX), 200);
        let huge = RetryPolicy {
            max_retries: 5,
            backoff_base_ms: u64::MAX,
            backoff_max_ms: u64::MAX,
        };
        assert_eq!(huge.backoff_ms(40, 1000), u64::MAX);
        assert_eq!(huge.backoff_ms(2, 0), u64::MAX / 2);
    }
}
