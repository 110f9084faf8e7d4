//! Join tokens (`join_token.rs`): created by an admin with a lifetime, redeemed once when the
//! node presenting one is added.

use super::{EntryContext, Handled};
use crate::{
    JoinTokenRecord, JoinTokenRefusal, MAX_JOIN_TOKEN_TTL_MS, MAX_JOIN_TOKENS, Rejection, Response, SpecError, State,
};

impl State {
    pub(crate) fn create_join_token(
        &mut self,
        cx: &mut EntryContext,
        secret_sha256: &[u8; 32],
        ttl_ms: u64,
    ) -> Handled {
        if ttl_ms == 0 || ttl_ms > MAX_JOIN_TOKEN_TTL_MS {
            return Err(SpecError::OutOfRange {
                field: "ttl_s".into(),
                value: i64::try_from(ttl_ms / 1000).unwrap_or(i64::MAX),
                min: 1,
                max: i64::try_from(MAX_JOIN_TOKEN_TTL_MS / 1000).unwrap_or(i64::MAX),
            }
            .into());
        }
        if self.join_tokens.contains_key(secret_sha256) {
            return Err(SpecError::Conflict {
                field: "secret".into(),
                reason: "a join token with this secret exists".into(),
            }
            .into());
        }
        let now_ms = cx.now_ms;
        self.join_tokens.retain(|_, t| t.check(None, now_ms).is_ok());
        if self.join_tokens.len() >= MAX_JOIN_TOKENS {
            return Err(Rejection::TooManyJoinTokens {
                count: self.join_tokens.len(),
            });
        }
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        self.join_tokens.insert(
            *secret_sha256,
            JoinTokenRecord {
                expires_at_ms,
                used_by: None,
            },
        );
        Ok(Response::JoinTokenCreated { expires_at_ms })
    }

    pub(crate) fn redeem_join_token(&mut self, cx: &mut EntryContext, secret_sha256: &[u8; 32], node: u64) -> Handled {
        let token = self
            .join_tokens
            .get_mut(secret_sha256)
            .ok_or(Rejection::JoinTokenRefused(JoinTokenRefusal::Unknown))?;
        token
            .check(Some(node), cx.now_ms)
            .map_err(Rejection::JoinTokenRefused)?;
        let changed = token.used_by.is_none();
        token.used_by = Some(node);
        Ok(Response::Done { changed })
    }

    /// Whether the join token whose secret hashes to `secret_sha256` may be redeemed at
    /// `now_ms` by a node that has not used it: what a node checks before handing the CA to
    /// its bearer.
    pub fn join_token_check(&self, secret_sha256: &[u8; 32], now_ms: u64) -> Result<(), JoinTokenRefusal> {
        self.join_tokens
            .get(secret_sha256)
            .ok_or(JoinTokenRefusal::Unknown)?
            .check(None, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use crate::{ApplyContext, Command, JoinTokenRefusal, Proposal, Rejection, Response, State};

    fn apply(state: &mut State, index: u64, now_ms: u64, command: Command) -> Response {
        let ctx = ApplyContext {
            log_index: index,
            term: 1,
        };
        state.apply(ctx, &Proposal::new(now_ms, command)).0
    }

    #[test]
    fn a_join_token_is_redeemed_once_before_it_expires() {
        let mut s = State::default();
        let secret = [7u8; 32];
        let create = |ttl_ms| Command::CreateJoinToken {
            secret_sha256: secret,
            ttl_ms,
        };
        assert_eq!(
            apply(&mut s, 1, 1_000, create(5_000)),
            Response::JoinTokenCreated { expires_at_ms: 6_000 }
        );
        assert_eq!(s.join_token_check(&secret, 5_999), Ok(()));
        assert_eq!(s.join_token_check(&secret, 6_000), Err(JoinTokenRefusal::Expired));
        assert_eq!(s.join_token_check(&[8u8; 32], 1_000), Err(JoinTokenRefusal::Unknown));
        let redeem = |secret_sha256, node| Command::RedeemJoinToken { secret_sha256, node };
        assert_eq!(
            apply(&mut s, 2, 2_000, redeem(secret, 4)),
            Response::Done { changed: true }
        );
        // The same node again (its join retried) is answered; any other is refused.
        assert_eq!(
            apply(&mut s, 3, 2_000, redeem(secret, 4)),
            Response::Done { changed: false }
        );
        assert_eq!(
            apply(&mut s, 3, 2_000, redeem(secret, 5)),
            Response::Rejected(Rejection::JoinTokenRefused(JoinTokenRefusal::Used))
        );
        assert_eq!(s.join_token_check(&secret, 2_000), Err(JoinTokenRefusal::Used));
        assert_eq!(
            apply(&mut s, 4, 2_000, redeem([9u8; 32], 4)),
            Response::Rejected(Rejection::JoinTokenRefused(JoinTokenRefusal::Unknown))
        );
        let late = [10u8; 32];
        apply(
            &mut s,
            5,
            2_000,
            Command::CreateJoinToken {
                secret_sha256: late,
                ttl_ms: 10,
            },
        );
        assert_eq!(
            apply(&mut s, 6, 2_010, redeem(late, 6)),
            Response::Rejected(Rejection::JoinTokenRefused(JoinTokenRefusal::Expired))
        );
    }

    #[test]
    fn join_tokens_are_bounded_in_life_and_number_and_the_dead_are_forgotten() {
        let mut s = State::default();
        let create = |n: u8, ttl_ms| Command::CreateJoinToken {
            secret_sha256: [n; 32],
            ttl_ms,
        };
        assert!(matches!(
            apply(&mut s, 1, 0, create(0, 0)),
            Response::Rejected(Rejection::Invalid(_))
        ));
        assert!(matches!(
            apply(&mut s, 2, 0, create(0, crate::MAX_JOIN_TOKEN_TTL_MS + 1)),
            Response::Rejected(Rejection::Invalid(_))
        ));
        for n in 0..crate::MAX_JOIN_TOKENS as u8 {
            assert!(matches!(
                apply(&mut s, 10 + u64::from(n), 0, create(n, 1_000)),
                Response::JoinTokenCreated { .. }
            ));
        }
        assert!(matches!(
            apply(&mut s, 100, 0, create(200, 1_000)),
            Response::Rejected(Rejection::TooManyJoinTokens { .. })
        ));
        // Once they expire they make room.
        assert!(matches!(
            apply(&mut s, 101, 1_000, create(200, 1_000)),
            Response::JoinTokenCreated { .. }
        ));
    }
}
