//! Helpers shared by the provider tests.

#![allow(dead_code)]

use flotilla_providers::{Observation, WorkerProvider};
use std::time::{Duration, Instant};

/// Polls `observe` until `f` holds; fails the test with the last observation after 60 s.
pub async fn wait_until(p: &impl WorkerProvider, name: &str, what: &str, f: impl Fn(&Observation) -> bool) -> Observation {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = p.observe(name).await.unwrap();
        if f(&o) {
            return o;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {o:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
