//! Why the leader's loops could not do something this tick. None of these is fatal: the loops
//! are level-triggered, and the next tick starts again from the replicated state.

use crate::raft::proposer::ProposeError;
use flotilla_providers::ProviderError;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// This node no longer leads in the term the tick started in; what is left of the tick is
    /// for the next leader.
    #[error("no longer the leader of term {term}")]
    Deposed { term: u64 },
    /// A proposal was not committed (its outcome is unknown or it was refused by Raft).
    #[error("proposing {command}: {source}")]
    Propose {
        command: &'static str,
        #[source]
        source: ProposeError,
    },
    /// A provider call failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// This node has no provider of the kind the assignment's pool names.
    #[error("this node has no {kind} provider for pool {pool}")]
    NoProvider { kind: String, pool: String },
    /// The assignment's pool keeps its workers on another host, which this node is not on.
    #[error("pool {pool}'s workers live on host {host}, which this node is not on")]
    OtherHost { pool: String, host: String },
    /// The job's secrets could not be opened here (no key file, or not the key that wraps
    /// them): its worker is not created and its output not committed by this leader.
    #[error("{0}")]
    Secrets(String),
    /// The job's source could not be checked out this time (the repository was unreachable);
    /// it is tried again a few seconds later.
    #[error("{0}")]
    Checkout(String),
    /// A job's artifacts could not be collected or delivered this time (a node unreachable, a
    /// disk error); tried again at the next tick.
    #[error("artifacts: {0}")]
    Artifacts(String),
    /// Commit statuses could not be posted from this node.
    #[error("{0}")]
    Statuses(String),
}
