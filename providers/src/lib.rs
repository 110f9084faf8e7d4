//! Worker providers: where jobs actually run (local processes, Docker, Kubernetes, and a
//! capacity-only simulator).
//!
//! Not built yet: the `WorkerProvider` trait and its implementations arrive with the issue
//! "Pipelines run for real". The crate exists now so that the workspace's boundaries are
//! fixed: it may depend on `flotilla-state-machine` types, never on openraft.
