//! The `sim` provider: workers that only exist in this node's memory. A worker "starts" at
//! once and finishes after a set time with a set exit code, producing no output. It lets the
//! scheduler and the Raft write path be measured at scales no host could run (the C1M
//! benchmark: a million jobs on 5,000 pools) and lets tests drive placement without processes.
//!
//! Per job, `SIM_DURATION_MS` and `SIM_EXIT_CODE` in the job's env override the defaults. The
//! workers live in the memory of the node that created them: after a leader change the new
//! leader does not see them and reports them lost (the jobs are then retried by their policy),
//! which is the honest behaviour of a provider whose workers died with their host. Removed
//! names are remembered, so a worker is never created twice by this node.
//!
//! A million of them live at once in the C1M benchmark, so each is small: keyed by its job
//! and attempt rather than its name, with the cluster id shared and one deadline instead of
//! a start and a duration (by the sizes of the fields, about 70 bytes a worker in the
//! table, where a name and an id of its own took about 180).

use crate::provider::{ListedWorker, Observation, ProviderError, WorkerProvider, WorkerSpec};
use crate::{parse_worker_name, worker_name};
use flotilla_state_machine::JobId;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct SimConfig {
    /// How long a worker runs unless its job sets `SIM_DURATION_MS`.
    pub default_duration_ms: u64,
}

struct SimWorker {
    cluster_id: Option<Arc<str>>,
    /// When it finishes (at once, once terminated); `None`: past any time an `Instant` holds.
    finishes_at: Option<Instant>,
    exit_code: i32,
}

/// A worker's name: a job's attempt as `worker_name` spells it, or any other text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum WorkerKey {
    Attempt(JobId, u32),
    Other(Box<str>),
}

impl WorkerKey {
    fn of(name: &str) -> Self {
        match parse_worker_name(name) {
            // Only the spelling `worker_name` gives maps back to the same name.
            Some((job, attempt)) if name.len() == worker_name_len(job, attempt) => Self::Attempt(job, attempt),
            _ => Self::Other(name.into()),
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Attempt(job, attempt) => worker_name(*job, *attempt),
            Self::Other(name) => name.to_string(),
        }
    }
}

/// The length of `worker_name(job, attempt)`, without spelling it (`observe` runs for every
/// live worker on every drive tick). A name `parse_worker_name` reads as the same job and
/// attempt differs from that spelling only by leading zeros, so only by its length.
fn worker_name_len(job: JobId, attempt: u32) -> usize {
    let digits = |n: u64| n.checked_ilog10().map_or(1, |log| log as usize + 1);
    "j".len() + digits(job.0) + "-a".len() + digits(u64::from(attempt))
}

#[derive(Default)]
struct Workers {
    live: HashMap<WorkerKey, SimWorker>,
    removed: HashSet<WorkerKey>,
    /// The cluster id the latest worker was created with, shared by the next ones.
    cluster_id: Option<Arc<str>>,
}

impl Workers {
    fn cluster_id(&mut self, id: Option<&str>) -> Option<Arc<str>> {
        let id = id?;
        if self.cluster_id.as_deref() != Some(id) {
            self.cluster_id = Some(id.into());
        }
        self.cluster_id.clone()
    }
}

pub struct SimProvider {
    config: SimConfig,
    workers: Mutex<Workers>,
}

impl SimProvider {
    pub fn new(config: SimConfig) -> Self {
        SimProvider {
            config,
            workers: Mutex::new(Workers::default()),
        }
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, Workers> {
        self.workers.lock().expect("sim workers lock")
    }
}

fn env_number<T: std::str::FromStr>(spec: &WorkerSpec, key: &str) -> Result<Option<T>, ProviderError> {
    spec.env
        .get(key)
        .map(|v| {
            v.parse()
                .map_err(|_| ProviderError::Rejected(format!("env {key}={v:?} is not a number")))
        })
        .transpose()
}

impl WorkerProvider for SimProvider {
    async fn create(&self, spec: &WorkerSpec) -> Result<String, ProviderError> {
        let name = spec.name();
        let duration_ms = env_number(spec, "SIM_DURATION_MS")?.unwrap_or(self.config.default_duration_ms);
        let exit_code = env_number(spec, "SIM_EXIT_CODE")?.unwrap_or(0);
        let key = WorkerKey::of(&name);
        let mut w = self.workers();
        if w.removed.contains(&key) {
            return Err(ProviderError::Rejected(format!(
                "worker {name} was removed before; an attempt never runs twice"
            )));
        }
        spec.refuse_foreign(w.live.get(&key).and_then(|h| h.cluster_id.as_deref()))?;
        if !w.live.contains_key(&key) {
            let worker = SimWorker {
                cluster_id: w.cluster_id(spec.cluster_id.as_deref()),
                finishes_at: Instant::now().checked_add(Duration::from_millis(duration_ms)),
                exit_code,
            };
            w.live.insert(key, worker);
        }
        Ok(name)
    }

    async fn observe(&self, name: &str) -> Result<Observation, ProviderError> {
        let w = self.workers();
        let Some(worker) = w.live.get(&WorkerKey::of(name)) else {
            return Ok(Observation::default());
        };
        let mut o = Observation {
            exists: true,
            started: true,
            step_started: Some(0),
            ..Observation::default()
        };
        if worker.finishes_at.is_some_and(|t| Instant::now() >= t) {
            o.steps_finished = vec![(0, worker.exit_code)];
            o.exit_code = Some(worker.exit_code);
        }
        Ok(o)
    }

    async fn read_output(&self, _name: &str, _offset: u64, _max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        Ok(Vec::new())
    }

    async fn terminate(&self, name: &str) -> Result<bool, ProviderError> {
        // A simulated worker stops the moment it is asked to.
        if let Some(worker) = self.workers().live.get_mut(&WorkerKey::of(name)) {
            let now = Instant::now();
            worker.finishes_at = Some(worker.finishes_at.map_or(now, |t| t.min(now)));
        }
        Ok(true)
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        let mut w = self.workers();
        let key = WorkerKey::of(name);
        w.live.remove(&key);
        w.removed.insert(key);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ListedWorker>, ProviderError> {
        let mut listed: Vec<ListedWorker> = self
            .workers()
            .live
            .iter()
            .map(|(key, w)| ListedWorker {
                name: key.name(),
                cluster_id: w.cluster_id.as_deref().map(str::to_string),
            })
            .collect();
        listed.sort();
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_length_is_that_of_the_spelled_name() {
        for job in [0, 1, 9, 10, 99, 100, 999_999, 1_000_000, u64::MAX] {
            for attempt in [0, 1, 9, 10, u32::MAX] {
                let name = worker_name(JobId(job), attempt);
                assert_eq!(worker_name_len(JobId(job), attempt), name.len(), "{name}");
                assert_eq!(WorkerKey::of(&name), WorkerKey::Attempt(JobId(job), attempt));
            }
        }
        assert_eq!(WorkerKey::of("j010-a1"), WorkerKey::Other("j010-a1".into()));
        assert_eq!(WorkerKey::of("j0-a01"), WorkerKey::Other("j0-a01".into()));
    }
}
