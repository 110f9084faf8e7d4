//! Raft between the nodes: openraft's network over gRPC (`network`), the gRPC service that
//! answers peers (`service`), and the `Proposer` that commits a command from any node.
//!
//! Everything that speaks to openraft directly lives here; the API and the leader's loops use
//! the `Proposer` and the helpers below.

pub mod addressing;
pub mod clock_sampler;
pub mod cluster_clock;
pub mod leader_contact;
pub mod leader_history;
pub mod network;
pub mod pb;
pub mod peer_certificate;
pub mod proposer;
pub mod service;
pub mod session_slots;
pub mod snapshot_trigger;
pub mod tls_connector;

/// The Raft instance of a node.
pub type Raft = openraft::Raft<flotilla_raft_store::TypeConfig, flotilla_raft_store::StateMachineStore>;

/// Why leadership did not move.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// openraft did not take the request (this node is not the leader, or it stopped).
    #[error("transfer refused: {0}")]
    Refused(String),
    #[error("node {to} did not take over within {timeout_ms} ms")]
    NotInTime { to: u64, timeout_ms: u128 },
}

/// Hands leadership to `to` and waits (up to `timeout`) until this node sees it lead.
pub async fn transfer_leadership(raft: &Raft, to: u64, timeout: std::time::Duration) -> Result<(), TransferError> {
    raft.trigger()
        .transfer_leader(to)
        .await
        .map_err(|e| TransferError::Refused(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if metrics(raft).current_leader == Some(to) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(TransferError::NotInTime {
        to,
        timeout_ms: timeout.as_millis(),
    })
}

/// The addresses of the leader these metrics name, if it is known and a member.
pub fn leader_addr(
    m: &openraft::RaftMetrics<flotilla_raft_store::TypeConfig>,
) -> Option<flotilla_raft_store::NodeAddr> {
    m.current_leader
        .and_then(|id| m.membership_config.membership().get_node(&id).cloned())
}

/// A copy of the node's current Raft metrics (term, leader, indexes, membership).
pub fn metrics(raft: &Raft) -> openraft::RaftMetrics<flotilla_raft_store::TypeConfig> {
    use openraft::async_runtime::WatchReceiver;
    raft.metrics().borrow_watched().clone()
}
