//! Join tokens: short-lived, single-use secrets that let a new node fetch the cluster CA and
//! be added as a member without an admin token (kubeadm's bootstrap tokens are the model).
//! The state keeps only the SHA-256 of each secret, its expiry by the cluster's clock, and
//! whether it was used; the node makes and hashes the secrets.

use serde::{Deserialize, Serialize};

/// Most join tokens the state holds; used and expired ones are forgotten when a new one is
/// made, so only live ones count.
pub const MAX_JOIN_TOKENS: usize = 64;
/// Longest life of a join token.
pub const MAX_JOIN_TOKEN_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// One join token as the state keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRecord {
    /// From this time on (the state's clock) it is refused.
    pub expires_at_ms: u64,
    /// The node added with it: it is refused from then on, except to that node again (a
    /// join retried after its answer was lost).
    pub used_by: Option<u64>,
}

/// Why a join token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinTokenRefusal {
    Unknown,
    Expired,
    Used,
}

impl JoinTokenRefusal {
    pub fn describe(self) -> &'static str {
        match self {
            JoinTokenRefusal::Unknown => "no such join token",
            JoinTokenRefusal::Expired => "the join token expired",
            JoinTokenRefusal::Used => "the join token was used already",
        }
    }
}

impl JoinTokenRecord {
    /// Whether node `by` (any node: `None`) may redeem it at `now_ms`.
    pub fn check(&self, by: Option<u64>, now_ms: u64) -> Result<(), JoinTokenRefusal> {
        if self.used_by.is_some_and(|used| Some(used) != by) {
            Err(JoinTokenRefusal::Used)
        } else if now_ms >= self.expires_at_ms {
            Err(JoinTokenRefusal::Expired)
        } else {
            Ok(())
        }
    }
}
