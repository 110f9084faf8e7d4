//! Worker providers: where jobs actually run.
//!
//! A provider runs one ephemeral worker per job attempt, named `j<job>-a<attempt>`, and lets the
//! leader observe it (started, step progress, output, exit) and stop it. Every operation is
//! idempotent by name, so a new leader can pick up where an old one stopped.
//!
//! The providers: `process` (each job's steps run with `sh` in their own directory on this
//! host), `docker/` (one container per attempt on a Docker Engine), `kubernetes/` (one pod per
//! attempt, state from a watcher) and `sim` (workers that exist only in memory, for benchmarks
//! at scale). The node uses each through `Guarded` (timeout, retries, circuit breaker) in a
//! `ProviderSet`. `output_window.rs` is the bounded window of output shared by the two
//! providers that follow a log stream (Docker and Kubernetes).

mod any_provider;
pub mod artifact_archive;
pub mod background;
mod breaker;
pub mod direct_io;
mod docker;
mod guarded;
mod kubernetes;
mod output_window;
mod process;
mod provider;
mod provider_set;
mod secret_value;
mod sim;
pub mod source_archive;
mod tombstones;
pub mod uploads;
pub mod write_behind;

pub use any_provider::AnyProvider;
pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use docker::{DockerConfig, DockerEndpoint, DockerProvider, EngineTombstones};
pub use guarded::{GuardConfig, Guarded};
pub use kubernetes::{KubernetesConfig, KubernetesProvider, PodView};
pub use process::{ProcessConfig, ProcessProvider, RunAs, RunAsError, default_secrets_dir, on_tmpfs};
pub use provider::{
    ArtifactRequest, CONTAINER_SECRETS_DIR, LABEL_ATTEMPT, LABEL_CLUSTER, LABEL_CLUSTER_ID, LABEL_JOB, LABEL_WORKER,
    ListedWorker, Observation, ProviderError, SOURCE_CA_VAR, SOURCE_CACHE_VAR, SOURCE_CHECKOUT_VAR, SOURCE_GRANT_VAR,
    SOURCE_INPUTS_VAR, SOURCE_URLS_VAR, SourceFetch, WorkerProvider, WorkerSpec, parse_worker_name, worker_name,
};
pub use provider_set::ProviderSet;
pub use secret_value::SecretValue;
pub use sim::{SimConfig, SimProvider};
pub use tombstones::Tombstones;
