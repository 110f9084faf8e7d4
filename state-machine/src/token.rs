//! API tokens, as the replicated state keeps them: a name, a role, the tenants it may act in,
//! an optional expiry, and the SHA-256 of its secret, never the secret itself. Every node
//! checks a caller's token against its own applied state, so a revocation takes effect on each
//! node at the entry that commits it. The node makes and hashes secrets; this crate only
//! stores and compares what it is given.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Most tokens the state holds (expired ones count until revoked).
pub const MAX_TOKENS: usize = 10_000;
/// Most tenants one token may name.
pub const MAX_TOKEN_TENANTS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TokenId(pub u64);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// What a token may do, each role including the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: pipelines, jobs, logs, events, pools, cluster status.
    Viewer,
    /// Submits and cancels pipelines in its tenants.
    Submitter,
    /// Registers and manages pools, quotas and priorities.
    Operator,
    /// Membership, tokens, limits, every tenant.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Submitter, Role::Operator, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One token as the state keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    /// The tenants it may act in; empty means every tenant (an admin's always does).
    pub tenants: BTreeSet<String>,
    /// SHA-256 of the secret.
    pub secret_sha256: [u8; 32],
    pub created_at_ms: u64,
    /// After this time (the state's clock) the token is refused.
    pub expires_at_ms: Option<u64>,
}

impl TokenRecord {
    /// Whether it may still be used at `now_ms`.
    pub fn live_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|t| now_ms < t)
    }

    /// Whether it may act in `tenant`.
    pub fn covers_tenant(&self, tenant: &str) -> bool {
        self.role == Role::Admin || self.tenants.is_empty() || self.tenants.contains(tenant)
    }
}

/// What `CreateToken` carries: everything but the id and the creation time, which `apply`
/// assigns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrant {
    pub name: String,
    pub role: Role,
    pub tenants: BTreeSet<String>,
    pub secret_sha256: [u8; 32],
    pub expires_at_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Viewer < Role::Submitter && Role::Submitter < Role::Operator && Role::Operator < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_token_expires_and_covers_its_tenants_or_all() {
        let t = TokenRecord {
            id: TokenId(1),
            name: "ci".into(),
            role: Role::Submitter,
            tenants: BTreeSet::from(["web".to_string()]),
            secret_sha256: [0; 32],
            created_at_ms: 0,
            expires_at_ms: Some(10),
        };
        assert!(t.live_at(9) && !t.live_at(10));
        assert!(t.covers_tenant("web") && !t.covers_tenant("db"));
        let admin = TokenRecord {
            role: Role::Admin,
            ..t.clone()
        };
        assert!(admin.covers_tenant("db"));
        let everywhere = TokenRecord {
            tenants: BTreeSet::new(),
            ..t
        };
        assert!(everywhere.covers_tenant("db"));
    }
}
