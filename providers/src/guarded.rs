//! Retries with backoff, a per-call timeout and a circuit breaker around any provider.
//!
//! The leader drives every worker from one loop; a provider that hangs or fails must not hold
//! that loop up for the workers of other providers. Each call is bounded by `call_timeout_ms`,
//! transient failures are retried a few times with exponential backoff, and after repeated
//! failures the breaker fails calls at once until a probe succeeds. Permanent errors (the
//! provider refused this worker) are neither retried nor held against the provider.

use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use crate::provider::{ArtifactRequest, ListedWorker, Observation, ProviderError, WorkerProvider, WorkerSpec};
use flotilla_state_machine::{PoolSpec, Resources};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long packing one job's artifacts may take (a gigabyte at a modest disk's pace).
pub const COLLECT_TIMEOUT_MS: u64 = 15 * 60 * 1000;

#[derive(Clone, Debug)]
pub struct GuardConfig {
    pub call_timeout_ms: u64,
    /// Retries of a transient failure within one call (0: no retry).
    pub retries: u32,
    /// Delay before the first retry; doubles each time.
    pub retry_base_ms: u64,
    pub breaker: BreakerConfig,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            call_timeout_ms: 10_000,
            retries: 2,
            retry_base_ms: 100,
            breaker: BreakerConfig::default(),
        }
    }
}

pub struct Guarded<P> {
    inner: P,
    config: GuardConfig,
    breaker: Mutex<Breaker>,
    /// Calls made (after the breaker let them through) and calls that failed after retries.
    calls: AtomicU64,
    failures: AtomicU64,
}

impl<P: WorkerProvider> Guarded<P> {
    pub fn new(inner: P, config: GuardConfig) -> Self {
        let breaker = Mutex::new(Breaker::new(config.breaker.clone()));
        Guarded {
            inner,
            config,
            breaker,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// `(calls, failures)` so far, for metrics.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.lock().expect("breaker lock").state()
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        self.call_within(self.config.call_timeout_ms, f).await
    }

    /// `call` with a timeout of its own, for calls whose work grows with the job's files.
    async fn call_within<T, F, Fut>(&self, timeout_ms: u64, f: F) -> Result<T, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        if let Err(refused) = self.breaker.lock().expect("breaker lock").admit(Instant::now()) {
            return Err(ProviderError::CircuitOpen {
                last: refused.last_error,
                retry_in_ms: refused.retry_in.as_millis() as u64,
            });
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut delay_ms = self.config.retry_base_ms;
        let mut retries_left = self.config.retries;
        loop {
            let result = match tokio::time::timeout(Duration::from_millis(timeout_ms), f()).await {
                Ok(r) => r,
                Err(_) => Err(ProviderError::Timeout(timeout_ms)),
            };
            match result {
                Err(e) if e.is_transient() => {
                    if retries_left == 0 {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        self.breaker
                            .lock()
                            .expect("breaker lock")
                            .record_failure(Instant::now(), &e.to_string());
                        return Err(e);
                    }
                    retries_left -= 1;
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    delay_ms = delay_ms.saturating_mul(2);
                }
                other => {
                    self.breaker.lock().expect("breaker lock").record_success();
                    return other;
                }
            }
        }
    }
}

impl<P: WorkerProvider> WorkerProvider for Guarded<P> {
    async fn create(&self, spec: &WorkerSpec) -> Result<String, ProviderError> {
        self.call(|| self.inner.create(spec)).await
    }

    async fn observe(&self, name: &str) -> Result<Observation, ProviderError> {
        self.call(|| self.inner.observe(name)).await
    }

    async fn read_output(&self, name: &str, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        self.call(|| self.inner.read_output(name, offset, max_bytes)).await
    }

    async fn terminate(&self, name: &str) -> Result<bool, ProviderError> {
        self.call(|| self.inner.terminate(name)).await
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        self.call(|| self.inner.remove(name)).await
    }

    async fn list(&self) -> Result<Vec<ListedWorker>, ProviderError> {
        self.call(|| self.inner.list()).await
    }

    fn measures_capacity(&self) -> bool {
        self.inner.measures_capacity()
    }

    async fn capacity(&self, pool: &PoolSpec) -> Result<Option<Resources>, ProviderError> {
        self.call(|| self.inner.capacity(pool)).await
    }

    async fn collect_artifacts(
        &self,
        name: &str,
        request: &ArtifactRequest,
    ) -> Result<crate::artifact_archive::Packed, ProviderError> {
        // A failed try may have left part of a blob behind.
        self.call_within(COLLECT_TIMEOUT_MS, || async {
            let _ = std::fs::remove_file(&request.dest);
            self.inner.collect_artifacts(name, request).await
        })
        .await
    }
}
