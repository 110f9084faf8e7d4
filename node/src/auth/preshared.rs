//! The pre-shared first admin token (`--admin-token-file`): a deployment gives every node the
//! same secret, and whichever of them leads first makes it the cluster's bootstrap admin token.
//!
//! A cluster founded at start (`--bootstrap`, as the StatefulSet and compose file do) has no
//! `cluster init` answer to hand a token out in, and a public `POST /v1/tokens/bootstrap`
//! would give the cluster to whoever reaches a port first. With the pre-shared secret the
//! operator holds the first admin token before the cluster exists; the bootstrap route is
//! refused on nodes that have one, and bootstrap is one-shot in the state machine, so two
//! leaders committing it leave one token.
//!
//! With `--recover-admin-token` the same file recovers a lost admin token: a node that leads a
//! cluster where no token has the file's secret commits it as a new admin token, once per
//! start. Whoever may start a node with chosen flags holds its data directory and the CA's key
//! already, so this grants nothing they do not have; it is logged as a warning.

use super::TokenSecret;
use crate::leader::Leadership;
use crate::raft::proposer::Proposer;
use flotilla_raft_store::StateHandle;
use flotilla_state_machine::State;
use std::time::Duration;
use tokio::sync::watch;

/// Pause between two looks at the state while the token is not committed.
const RETRY_MS: u64 = 1_000;

/// What the file's secret is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The cluster's first admin token (the default).
    FirstToken,
    /// An admin token again, for a cluster whose admin tokens are lost (`--recover-admin-token`).
    Recover,
}

/// What the loop does next, from what it sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not leading, or no cluster yet: look again later.
    Wait,
    /// Leading a cluster without a first token: commit the pre-shared one.
    Commit,
    /// Leading a cluster that has tokens, none of them the file's: commit it as a new admin.
    Recover,
    /// The first token exists (`ours`: it is the pre-shared one); nothing more to do.
    Done { ours: bool },
}

/// The next step for a node that leads (`leading`) a cluster in `state`, holding `secret`
/// for `purpose`.
pub fn next_step(leading: bool, state: &State, secret: &TokenSecret, purpose: Purpose) -> Step {
    let ours = state.token_by_secret(&secret.sha256()).is_some();
    match (state.tokens_bootstrapped(), leading) {
        (true, _) if ours || purpose == Purpose::FirstToken => Step::Done { ours },
        (_, false) => Step::Wait,
        (true, true) => Step::Recover,
        (false, true) => Step::Commit,
    }
}

/// Runs until the cluster has its first admin token or the node stops.
pub async fn run(
    leadership: Leadership,
    machine: StateHandle,
    proposer: Proposer,
    secret: TokenSecret,
    purpose: Purpose,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let step = {
            let data = machine.read();
            next_step(leadership.term().is_some(), &data.state, &secret, purpose)
        };
        match step {
            Step::Done { ours: true } => return,
            Step::Done { ours: false } => {
                tracing::warn!(
                    "the cluster's first admin token is not the one in --admin-token-file (it was bootstrapped before, or that token was revoked)"
                );
                return;
            }
            Step::Commit => match crate::api::tokens::commit_bootstrap(&proposer, &secret).await {
                Ok(id) => tracing::info!(token = %id, "the pre-shared admin token is the cluster's first token"),
                Err(e) => {
                    tracing::warn!(error = %e.message(), "committing the pre-shared admin token failed; trying again")
                }
            },
            Step::Recover => match crate::api::tokens::commit_recovered(&proposer, &secret).await {
                Ok(id) => {
                    tracing::warn!(token = %id, "--recover-admin-token: the token of --admin-token-file is an admin token again; restart without the flag");
                    return;
                }
                Err(e) => tracing::warn!(error = %e.message(), "recovering the admin token failed; trying again"),
            },
            Step::Wait => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(RETRY_MS)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_state_machine::{ApplyContext, Command, Proposal, Role, TokenGrant};
    use std::collections::BTreeSet;

    fn bootstrap(state: &mut State, secret: &TokenSecret) {
        let grant = TokenGrant {
            name: "bootstrap-admin".into(),
            role: Role::Admin,
            tenants: BTreeSet::new(),
            secret_sha256: secret.sha256(),
            expires_at_ms: None,
        };
        let ctx = ApplyContext { log_index: 1, term: 1 };
        state.apply(
            ctx,
            &Proposal::new(1_000, Command::CreateToken { grant, bootstrap: true }),
        );
    }

    #[test]
    fn only_a_leader_of_a_cluster_without_a_first_token_commits_it() {
        let secret = TokenSecret::generate();
        let mut state = State::default();
        let first = Purpose::FirstToken;
        assert_eq!(next_step(false, &state, &secret, first), Step::Wait);
        assert_eq!(next_step(true, &state, &secret, first), Step::Commit);
        bootstrap(&mut state, &secret);
        assert_eq!(next_step(true, &state, &secret, first), Step::Done { ours: true });
        assert_eq!(next_step(false, &state, &secret, first), Step::Done { ours: true });
    }

    #[test]
    fn a_cluster_bootstrapped_with_another_secret_is_left_alone_unless_recovering() {
        let mut state = State::default();
        bootstrap(&mut state, &TokenSecret::generate());
        let other = TokenSecret::generate();
        assert_eq!(
            next_step(true, &state, &other, Purpose::FirstToken),
            Step::Done { ours: false }
        );
        // Recovering: a leader commits it as a new admin token; a follower waits; a cluster
        // that already holds it needs nothing.
        assert_eq!(next_step(true, &state, &other, Purpose::Recover), Step::Recover);
        assert_eq!(next_step(false, &state, &other, Purpose::Recover), Step::Wait);
        let mut fresh = State::default();
        assert_eq!(next_step(true, &fresh, &other, Purpose::Recover), Step::Commit);
        bootstrap(&mut fresh, &other);
        assert_eq!(
            next_step(true, &fresh, &other, Purpose::Recover),
            Step::Done { ours: true }
        );
    }
}
