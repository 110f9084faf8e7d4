//! Helpers shared by the provider tests.

#![allow(dead_code)]

use flotilla_providers::{Observation, WorkerProvider, WorkerSpec};
use flotilla_state_machine::{FencingToken, JobId, Resources};
use std::time::{Duration, Instant};

/// Polls `observe` until `f` holds; fails the test with the last observation after 60 s.
pub async fn wait_until(
    p: &impl WorkerProvider,
    name: &str,
    what: &str,
    f: impl Fn(&Observation) -> bool,
) -> Observation {
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

/// The cluster id the tests' workers are created for.
pub const CLUSTER_ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

/// The names `list` returned.
pub fn names(listed: Vec<flotilla_providers::ListedWorker>) -> Vec<String> {
    listed.into_iter().map(|w| w.name).collect()
}

/// Attempt 1 of job `job` running `steps` on the host (no image), with `GREETING=hi`.
pub fn spec(job: u64, steps: &[&str]) -> WorkerSpec {
    WorkerSpec {
        job: JobId(job),
        attempt: 1,
        fencing: FencingToken {
            term: 1,
            log_index: job,
        },
        steps: steps.iter().map(|s| s.to_string()).collect(),
        env: [("GREETING".to_string(), "hi".to_string())].into(),
        secret_env: Default::default(),
        secret_files: Default::default(),
        image: None,
        resources: Resources::new(100, 64, 0),
        timeout_ms: 60_000,
        labels: Default::default(),
        pool_settings: Default::default(),
        cluster_id: Some(CLUSTER_ID.into()),
        checkout: None,
        source_fetch: None,
        inputs: Vec::new(),
        cache: None,
        uploads: Default::default(),
    }
}
