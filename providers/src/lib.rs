//! Worker providers: where jobs actually run.
//!
//! A provider runs one ephemeral worker per job attempt, named `j<job>-a<attempt>`, and lets the
//! leader observe it (started, step progress, output, exit) and stop it. Every operation is
//! idempotent by name, so a new leader can pick up where an old one stopped.
//!
//! Built: the `process` provider (each job's steps run with `sh` in their own directory on this
//! host) and the `docker` provider (one container per attempt on the local engine), each used
//! and the `kubernetes` provider (one pod per attempt, state from a watcher), each used through
//! `Guarded` (timeout, retries, circuit breaker) in a `ProviderSet`; and `sim`, workers that
//! exist only in memory, for benchmarks at scale.

mod any_provider;
mod breaker;
mod docker;
mod docker_output;
mod guarded;
mod kubernetes;
mod kubernetes_capacity;
mod kubernetes_markers;
mod kubernetes_output;
mod kubernetes_pod;
pub mod kubernetes_quantity;
mod output_window;
mod process;
mod provider;
mod provider_set;
mod sim;
mod tombstones;

pub use any_provider::AnyProvider;
pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use docker::{DockerConfig, DockerProvider, LABEL_ATTEMPT, LABEL_CLUSTER, LABEL_JOB, LABEL_WORKER};
pub use guarded::{GuardConfig, Guarded};
pub use kubernetes::{KubernetesConfig, KubernetesProvider};
pub use kubernetes_pod::PodView;
pub use process::{ProcessConfig, ProcessProvider};
pub use provider::{Observation, ProviderError, WorkerProvider, WorkerSpec, parse_worker_name, worker_name};
pub use provider_set::ProviderSet;
pub use sim::{SimConfig, SimProvider};
pub use tombstones::Tombstones;
