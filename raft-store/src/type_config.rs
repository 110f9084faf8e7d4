//! openraft's type configuration for Flotilla: what a log entry carries and what a node is.

use flotilla_state_machine::{Proposal, Response};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a cluster member listens (Raft RPCs over gRPC, the REST API) and which life of its
/// data directory the cluster added: a node whose directory was lost comes back as another
/// incarnation, and its peers' messages, addressed to the old one, are refused by it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub raft_addr: String,
    pub api_addr: String,
    pub incarnation: u64,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// Flotilla's Raft types: entries carry a `Proposal`, apply answers a `Response`.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = u64,
        Node = NodeAddr,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Membership = openraft::Membership<u64, NodeAddr>;
