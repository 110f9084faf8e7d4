//! A circuit breaker, kept free of clocks and I/O (the caller passes `now`) so its rules are
//! tested exactly.
//!
//! Closed: calls pass; `failure_threshold` transient failures in a row open it. Open: calls
//! fail fast until `open_ms` has passed, then one probe call is let through (half-open). The
//! probe's success closes the breaker; its failure opens it again for another `open_ms`.

use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_ms: 5_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe call is out; everyone else still fails fast.
    HalfOpen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    last_error: String,
}

/// Refusal to call: the breaker is open (or a probe is already out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub last_error: String,
    pub retry_in: Duration,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            phase: Phase::Closed { failures: 0 },
            last_error: String::new(),
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// May a call be made now?
    pub fn admit(&mut self, now: Instant) -> Result<(), Refused> {
        match self.phase {
            Phase::Closed { .. } => Ok(()),
            Phase::Open { until } if now >= until => {
                self.phase = Phase::HalfOpen;
                Ok(())
            }
            Phase::Open { until } => Err(Refused {
                last_error: self.last_error.clone(),
                retry_in: until - now,
            }),
            Phase::HalfOpen => Err(Refused {
                last_error: self.last_error.clone(),
                retry_in: Duration::from_millis(self.config.open_ms),
            }),
        }
    }

    pub fn record_success(&mut self) {
        self.phase = Phase::Closed { failures: 0 };
    }

    pub fn record_failure(&mut self, now: Instant, error: &str) {
        self.last_error = error.to_string();
        let open = Phase::Open {
            until: now + Duration::from_millis(self.config.open_ms),
        };
        self.phase = match self.phase {
            Phase::Closed { failures } if failures + 1 < self.config.failure_threshold => {
                Phase::Closed { failures: failures + 1 }
            }
            _ => open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (Breaker, Instant) {
        (
            Breaker::new(BreakerConfig {
                failure_threshold: 3,
                open_ms: 1_000,
            }),
            Instant::now(),
        )
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let (mut b, t) = breaker();
        b.record_failure(t, "x");
        b.record_failure(t, "x");
        b.record_success();
        b.record_failure(t, "x");
        b.record_failure(t, "x");
        assert_eq!(b.state(), BreakerState::Closed, "a success resets the count");
        assert!(b.admit(t).is_ok());
        b.record_failure(t, "engine down");
        assert_eq!(b.state(), BreakerState::Open);
        let refused = b.admit(t + Duration::from_millis(400)).unwrap_err();
        assert_eq!(refused.last_error, "engine down");
        assert_eq!(refused.retry_in, Duration::from_millis(600));
    }

    #[test]
    fn after_the_cool_down_one_probe_decides() {
        let (mut b, t) = breaker();
        for _ in 0..3 {
            b.record_failure(t, "x");
        }
        let later = t + Duration::from_millis(1_000);
        assert!(b.admit(later).is_ok(), "the probe goes through");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit(later).is_err(), "only one probe at a time");
        b.record_failure(later, "still down");
        assert_eq!(b.state(), BreakerState::Open);
        assert!(
            b.admit(later + Duration::from_millis(999)).is_err(),
            "open again for a full period"
        );

        let much_later = later + Duration::from_millis(1_000);
        assert!(b.admit(much_later).is_ok());
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(much_later).is_ok());
    }
}
