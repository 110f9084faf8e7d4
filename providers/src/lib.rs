//! Worker providers: where jobs actually run.
//!
//! A provider runs one ephemeral worker per job attempt, named `j<job>-a<attempt>`, and lets the
//! leader observe it (started, step progress, output, exit) and stop it. Every operation is
//! idempotent by name, so a new leader can pick up where an old one stopped.
//!
//! Built so far: the `process` provider (each job's steps run with `sh` in their own directory
//! on this host). Docker, Kubernetes and the capacity-only simulator come later.

mod process;
mod provider;

pub use process::{ProcessConfig, ProcessProvider};
pub use provider::{worker_name, Observation, ProviderError, WorkerProvider, WorkerSpec};
