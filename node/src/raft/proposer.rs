//! Getting a command committed from any node: the leader proposes it to Raft, a follower
//! forwards it to the leader over gRPC (the client never has to find the leader).
//!
//! A client's command carries a client session stamp (`session_slots.rs`) from its first try
//! to its last, so a forward retried after the leader committed it is answered from the
//! replicated session table, never applied twice. Time is the leader's: `commit_here`, which
//! every entry passes on the leader, stamps the proposal with the leader's clock, whatever the
//! proposing or forwarding node put there.

use crate::Raft;
use crate::identity::{Identity, Incarnation};
use crate::raft::addressing::address;
use crate::raft::network::{Channels, from_blob, to_blob};
use flotilla_raft_store::NodeAddr;
use flotilla_state_machine::{Command, Proposal, Response};
use openraft::errors::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest Raft entry this node creates, as encoded in the log. Well below what a follower
/// accepts in one message (`network::MAX_RAFT_MESSAGE_BYTES`), so that every entry the leader
/// appends can be replicated: an entry a follower refuses would be retried forever and stop
/// the cluster (once seen with an 84 MB entry made from a 67 KB YAML body).
pub const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;

/// Attempts before a write is reported as failed (each waits for a leader or follows a hint).
const PROPOSE_ATTEMPTS: usize = 20;
const NO_LEADER_WAIT_MS: u64 = 250;

#[derive(Clone, Debug, thiserror::Error, Serialize, Deserialize)]
pub enum ProposeError {
    /// No leader is known right now (election in progress or no quorum).
    #[error("no leader is available: {0}")]
    NoLeader(String),
    /// This node is not the leader; the hint names the one it believes is.
    #[error("not the leader")]
    NotLeader { leader: Option<(u64, NodeAddr)> },
    #[error("write failed: {0}")]
    Failed(String),
    #[error("write timed out after {0} ms; it may still commit")]
    Timeout(u64),
    /// The command would make a Raft entry larger than `MAX_ENTRY_BYTES`; nothing was proposed.
    #[error("the command takes {bytes} bytes, more than the {max} bytes one entry may hold")]
    TooLarge { bytes: usize, max: usize },
    /// A forward carried a command only the leader proposes (`Command::is_client_request`).
    #[error("a forward may carry only a client's request; {kind} is proposed by the leader alone")]
    NotForwardable { kind: String },
}

#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    channels: Channels,
    /// This node's identity: forwards and read-index requests carry its cluster id.
    identity: Identity,
    /// The voters' median clock, which the leader stamps (`cluster_clock.rs`).
    clock: std::sync::Arc<super::cluster_clock::ClusterClock>,
    rpc_timeout_ms: u64,
    sessions: std::sync::Arc<super::session_slots::SessionSlots>,
}

pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Proposer {
    pub fn new(
        raft: Raft,
        channels: Channels,
        identity: Identity,
        clock: std::sync::Arc<super::cluster_clock::ClusterClock>,
        rpc_timeout_ms: u64,
    ) -> Self {
        Proposer {
            raft,
            channels,
            identity,
            clock,
            rpc_timeout_ms,
            sessions: Default::default(),
        }
    }

    /// The time this node stamps on entries when it leads: its clock corrected to the voters'
    /// median (`cluster_clock.rs`); `None` until a majority of the voters' clocks is sampled.
    pub fn stamp_ms(&self) -> Option<u64> {
        let wall_ms = wall_clock_ms();
        if let Some(t) = self.clock.corrected(wall_ms) {
            return Some(t);
        }
        // Between two sampling rounds (a cluster of one needs none): computed here.
        let voters = crate::raft::metrics(&self.raft)
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        self.clock.update(*self.raft.node_id(), &voters, wall_ms)?;
        self.clock.corrected(wall_ms)
    }

    /// The time the leader's loops decide by: `stamp_ms`, or this node's own clock while
    /// there is none (whatever they propose then is refused until there is).
    pub fn now_ms(&self) -> u64 {
        self.stamp_ms().unwrap_or_else(wall_clock_ms)
    }

    /// Commits a client's `command` through the leader, wherever it is, and returns `apply`'s
    /// response. However often it is retried, it is applied at most once.
    pub async fn commit(&self, command: Command) -> Result<Response, ProposeError> {
        let slot = self.sessions.take();
        let mut proposal = Proposal::new(wall_clock_ms(), command)
            .from_client(slot.request())
            .by(crate::auth::gate::current_actor());
        proposal.trace_parent = crate::observe::telemetry::current_trace_parent();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.rpc_timeout_ms);
        let mut last = ProposeError::NoLeader("no attempt made".into());
        for _ in 0..PROPOSE_ATTEMPTS {
            if tokio::time::Instant::now() >= deadline {
                return Err(ProposeError::Timeout(self.rpc_timeout_ms));
            }
            let me = *self.raft.node_id();
            let (tried, attempt) = match self.commit_here(proposal.clone()).await {
                Err(ProposeError::NotLeader {
                    leader: Some((id, node)),
                }) if id != me => (Some(id), self.forward(id, &node, &proposal, deadline).await),
                // This node, if it leads, or the leader it knows of (if any).
                other => (crate::raft::metrics(&self.raft).current_leader, other),
            };
            match attempt {
                Ok(r) => return Ok(r),
                Err(
                    e @ (ProposeError::Failed(_)
                    | ProposeError::Timeout(_)
                    | ProposeError::TooLarge { .. }
                    | ProposeError::NotForwardable { .. }),
                ) => {
                    return Err(e);
                }
                Err(e) => {
                    last = e;
                    self.wait_for_leader_other_than(tried).await;
                }
            }
        }
        Err(match last {
            ProposeError::NotLeader { .. } => ProposeError::NoLeader("leadership kept moving".into()),
            other => other,
        })
    }

    /// Returns once this node knows a leader other than `tried` (the one that just failed, or
    /// none), or after `NO_LEADER_WAIT_MS`: a write waiting out an election goes to the new
    /// leader the moment this node hears of it, not at the next poll.
    async fn wait_for_leader_other_than(&self, tried: Option<u64>) {
        let _ = self
            .raft
            .wait(Some(Duration::from_millis(NO_LEADER_WAIT_MS)))
            .metrics(
                |m| m.current_leader.is_some() && m.current_leader != tried,
                "a leader to retry with",
            )
            .await;
    }

    /// Proposes on this node only; a follower answers `NotLeader` with a hint. Every entry this
    /// node creates passes here, so this is where its size is bounded and where it gets the
    /// leader's time: `now_ms` is this node's clock, whatever the proposal carried (a
    /// forwarding node's clock, or a forged value on the Raft port).
    pub async fn commit_here(&self, mut proposal: Proposal) -> Result<Response, ProposeError> {
        proposal.now_ms = match self.stamp_ms() {
            Some(t) => t,
            // Not the leader: Raft refuses the write with a hint whatever its time says.
            None if !self.raft.is_leader() => wall_clock_ms(),
            None => {
                return Err(ProposeError::NoLeader(
                    "this node leads but has not yet sampled a majority of the voters' clocks".into(),
                ));
            }
        };
        check_entry_size(&proposal)?;
        let trace = proposal
            .trace_parent
            .clone()
            .map(|tp| (tp, std::time::SystemTime::now(), proposal.command.kind()));
        match self.raft.client_write(proposal).await {
            Ok(r) => {
                if let Some((tp, started, kind)) = trace {
                    let attributes = vec![
                        opentelemetry::KeyValue::new("flotilla.node", *self.raft.node_id() as i64),
                        opentelemetry::KeyValue::new("flotilla.command", kind),
                        opentelemetry::KeyValue::new("raft.log_index", r.log_id.index as i64),
                    ];
                    crate::observe::telemetry::record(
                        "raft.commit",
                        Some(&tp),
                        started,
                        std::time::SystemTime::now(),
                        attributes,
                    );
                }
                Ok(r.data)
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let leader = f.leader_id.zip(f.leader_node);
                if leader.is_none() {
                    return Err(ProposeError::NoLeader("election in progress".into()));
                }
                Err(ProposeError::NotLeader { leader })
            }
            Err(e) => Err(ProposeError::Failed(e.to_string())),
        }
    }

    async fn forward(
        &self,
        leader_id: u64,
        leader: &NodeAddr,
        proposal: &Proposal,
        deadline: tokio::time::Instant,
    ) -> Result<Response, ProposeError> {
        check_entry_size(proposal)?;
        let mut client = self
            .channels
            .client(leader_id, &leader.raft_addr)
            .map_err(ProposeError::NoLeader)?;
        let mut req = tonic::Request::new(to_blob(proposal).map_err(|e| ProposeError::Failed(e.to_string()))?);
        req.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
        address(
            &mut req,
            self.identity.cluster_id().as_deref(),
            Incarnation(leader.incarnation),
        );
        match client.forward(req).await {
            Ok(resp) => from_blob::<Result<Response, ProposeError>>(resp.get_ref())
                .map_err(|e| ProposeError::Failed(e.to_string()))?,
            // The leader is unreachable (killed, partitioned): retry after a new election.
            Err(status) if status.code() == tonic::Code::DeadlineExceeded => {
                Err(ProposeError::Timeout(self.rpc_timeout_ms))
            }
            Err(status) => Err(ProposeError::NoLeader(format!(
                "leader at {} unreachable: {}",
                leader.raft_addr,
                status.message()
            ))),
        }
    }

    /// The log index a linearizable read must wait for, from the leader's read index.
    pub async fn read_index(&self) -> Result<u64, ProposeError> {
        if self.raft.is_leader() {
            return self.read_index_local().await;
        }
        let metrics = crate::raft::metrics(&self.raft);
        let (leader_id, leader) = metrics
            .current_leader
            .zip(crate::raft::leader_addr(&metrics))
            .ok_or_else(|| ProposeError::NoLeader("no leader known for a linearizable read".into()))?;
        let mut client = self
            .channels
            .client(leader_id, &leader.raft_addr)
            .map_err(ProposeError::NoLeader)?;
        let mut req = tonic::Request::new(to_blob(&()).map_err(|e| ProposeError::Failed(e.to_string()))?);
        req.set_timeout(Duration::from_millis(self.rpc_timeout_ms));
        address(
            &mut req,
            self.identity.cluster_id().as_deref(),
            Incarnation(leader.incarnation),
        );
        let resp = client
            .read_index(req)
            .await
            .map_err(|s| ProposeError::NoLeader(s.message().to_string()))?;
        from_blob::<Result<u64, ProposeError>>(resp.get_ref()).map_err(|e| ProposeError::Failed(e.to_string()))?
    }

    pub async fn read_index_local(&self) -> Result<u64, ProposeError> {
        let read = self
            .raft
            .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
            .await
            .map_err(|e| ProposeError::NoLeader(e.to_string()))?;
        Ok(read.index())
    }
}

pub type ForwardResult = Result<Response, ProposeError>;

/// Refuses a proposal whose log entry would be larger than `MAX_ENTRY_BYTES`.
pub fn check_entry_size(proposal: &Proposal) -> Result<(), ProposeError> {
    let bytes = flotilla_raft_store::encoded_len(proposal).map_err(|e| ProposeError::Failed(e.to_string()))?;
    if bytes > MAX_ENTRY_BYTES {
        return Err(ProposeError::TooLarge {
            bytes,
            max: MAX_ENTRY_BYTES,
        });
    }
    Ok(())
}
