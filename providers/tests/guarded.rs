//! `Guarded`: timeouts, retries and the circuit breaker around a provider that fails on demand.

mod common;

use flotilla_providers::{
    BreakerConfig, BreakerState, GuardConfig, Guarded, Observation, ProviderError, WorkerProvider, WorkerSpec,
};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

#[derive(Default)]
struct Flaky {
    down: AtomicBool,
    hang: AtomicBool,
    calls: AtomicU32,
}

impl WorkerProvider for Flaky {
    async fn create(&self, _: &WorkerSpec) -> Result<String, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(ProviderError::Rejected("no such image".into()))
    }

    async fn observe(&self, _: &str) -> Result<Observation, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable("connection refused".into()));
        }
        Ok(Observation {
            exists: true,
            ..Observation::default()
        })
    }

    async fn read_output(&self, _: &str, _: u64, _: usize) -> Result<Vec<u8>, ProviderError> {
        Ok(Vec::new())
    }

    async fn terminate(&self, _: &str) -> Result<bool, ProviderError> {
        Ok(true)
    }

    async fn remove(&self, _: &str) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<flotilla_providers::ListedWorker>, ProviderError> {
        Ok(Vec::new())
    }
}

fn guarded() -> Guarded<Flaky> {
    let config = GuardConfig {
        call_timeout_ms: 200,
        retries: 1,
        retry_base_ms: 10,
        breaker: BreakerConfig {
            failure_threshold: 2,
            open_ms: 300,
        },
    };
    Guarded::new(Flaky::default(), config)
}

fn calls(g: &Guarded<Flaky>) -> u32 {
    g.inner().calls.load(Ordering::SeqCst)
}

#[tokio::test]
async fn transient_failures_are_retried_then_open_the_breaker_until_a_probe_succeeds() {
    let g = guarded();
    g.inner().down.store(true, Ordering::SeqCst);
    assert!(g.observe("w").await.is_err());
    assert_eq!(calls(&g), 2, "one retry after the first failure");
    assert_eq!(g.breaker_state(), BreakerState::Closed);
    assert!(g.observe("w").await.is_err());
    assert_eq!(g.breaker_state(), BreakerState::Open);

    let before = calls(&g);
    let e = g.observe("w").await.unwrap_err();
    assert!(matches!(e, ProviderError::CircuitOpen { .. }), "{e:?}");
    assert!(
        e.to_string().contains("connection refused"),
        "the last cause is reported: {e}"
    );
    assert_eq!(calls(&g), before, "an open breaker does not call the provider");

    g.inner().down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        g.observe("w").await.is_ok(),
        "the probe after the cool-down goes through"
    );
    assert_eq!(g.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_hung_call_times_out_and_counts_as_a_failure() {
    let g = guarded();
    g.inner().hang.store(true, Ordering::SeqCst);
    let e = g.observe("w").await.unwrap_err();
    assert!(matches!(e, ProviderError::Timeout(200)), "{e:?}");
    assert_eq!(calls(&g), 2, "a timeout is transient and retried once");
}

#[tokio::test]
async fn permanent_refusals_are_not_retried_and_leave_the_breaker_closed() {
    let g = guarded();
    let spec = common::spec(1, &["true"]);
    for _ in 0..5 {
        let e = g.create(&spec).await.unwrap_err();
        assert!(matches!(e, ProviderError::Rejected(_)));
    }
    assert_eq!(calls(&g), 5);
    assert_eq!(g.breaker_state(), BreakerState::Closed);
}
