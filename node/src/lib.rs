//! A Flotilla cluster node: openraft over gRPC between nodes, the REST API for users, the
//! leader's loops that schedule jobs and drive their workers, and the consumers of the node's
//! event journal.
//!
//! The binary (`main.rs`) only parses configuration and runs a `RunningNode`; everything else
//! lives here so tests can reuse it.
//!
//! - `raft/`: transport, the peers' gRPC service, the proposer.
//! - `leader/`: the placement and drive loops; `leader/reconcile.rs` is the pure reconciler.
//! - `api/`: the REST API.
//! - `events/`: the NATS publisher and the applied observer.
//! - `observe/`: metrics and telemetry.

pub mod api;
pub mod artifacts;
pub mod auth;
pub mod console;
pub mod events;
pub mod founding;
pub mod identity;
pub mod leader;
pub mod node;
pub mod observe;
pub mod raft;
pub mod secrets;
pub mod settings;
pub mod source;
pub mod tls;
pub mod worker_providers;

pub use node::RunningNode;
pub use raft::Raft;
pub use settings::{Options, Settings};
