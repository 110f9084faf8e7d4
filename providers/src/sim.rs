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

use crate::provider::{ListedWorker, Observation, ProviderError, WorkerProvider, WorkerSpec};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct SimConfig {
    /// How long a worker runs unless its job sets `SIM_DURATION_MS`.
    pub default_duration_ms: u64,
}

struct SimWorker {
    cluster_id: Option<String>,
    created: Instant,
    duration: Duration,
    exit_code: i32,
}

#[derive(Default)]
struct Workers {
    live: HashMap<String, SimWorker>,
    removed: HashSet<String>,
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
        let mut w = self.workers();
        if w.removed.contains(&name) {
            return Err(ProviderError::Rejected(format!(
                "worker {name} was removed before; an attempt never runs twice"
            )));
        }
        spec.refuse_foreign(w.live.get(&name).and_then(|h| h.cluster_id.as_deref()))?;
        w.live.entry(name.clone()).or_insert(SimWorker {
            cluster_id: spec.cluster_id.clone(),
            created: Instant::now(),
            duration: Duration::from_millis(duration_ms),
            exit_code,
        });
        Ok(name)
    }

    async fn observe(&self, name: &str) -> Result<Observation, ProviderError> {
        let w = self.workers();
        let Some(worker) = w.live.get(name) else {
            return Ok(Observation::default());
        };
        let mut o = Observation {
            exists: true,
            started: true,
            step_started: Some(0),
            ..Observation::default()
        };
        if worker.created.elapsed() >= worker.duration {
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
        if let Some(worker) = self.workers().live.get_mut(name) {
            worker.duration = Duration::ZERO;
        }
        Ok(true)
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        let mut w = self.workers();
        w.live.remove(name);
        w.removed.insert(name.to_string());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ListedWorker>, ProviderError> {
        let mut listed: Vec<ListedWorker> = self
            .workers()
            .live
            .iter()
            .map(|(name, w)| ListedWorker {
                name: name.clone(),
                cluster_id: w.cluster_id.clone(),
            })
            .collect();
        listed.sort();
        Ok(listed)
    }
}
