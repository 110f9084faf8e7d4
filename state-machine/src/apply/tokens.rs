//! API tokens: created (the first one by bootstrap, once) and revoked. What a token is and may
//! do is in `token.rs`; the node hashes the secret and checks callers against this table.

use super::{EntryContext, Handled};
use crate::spec::validate_name;
use crate::{
    Event, MAX_TOKEN_TENANTS, MAX_TOKENS, Rejection, Response, Role, SpecError, State, TokenGrant, TokenId, TokenRecord,
};

impl State {
    pub(crate) fn create_token(&mut self, cx: &mut EntryContext, grant: &TokenGrant, bootstrap: bool) -> Handled {
        validate_name("name", &grant.name, &self.limits)?;
        if grant.tenants.len() > MAX_TOKEN_TENANTS {
            return Err(SpecError::TooMany {
                field: "tenants".into(),
                count: grant.tenants.len(),
                max: MAX_TOKEN_TENANTS,
            }
            .into());
        }
        for tenant in &grant.tenants {
            validate_name("tenants", tenant, &self.limits)?;
        }
        if bootstrap {
            if self.tokens_bootstrapped {
                return Err(Rejection::AlreadyBootstrapped);
            }
            if grant.role != Role::Admin || !grant.tenants.is_empty() || grant.expires_at_ms.is_some() {
                return Err(SpecError::Conflict {
                    field: "role".into(),
                    reason: "the bootstrap token is an admin of every tenant that never expires".into(),
                }
                .into());
            }
        }
        if grant.expires_at_ms.is_some_and(|t| t <= cx.now_ms) {
            return Err(SpecError::Conflict {
                field: "expires_at_ms".into(),
                reason: "the expiry is not in the future".into(),
            }
            .into());
        }
        if self.tokens.len() >= MAX_TOKENS {
            return Err(Rejection::TooManyTokens {
                count: self.tokens.len(),
            });
        }
        if self.tokens_by_secret.contains_key(&grant.secret_sha256) {
            // Two random 256-bit secrets never collide: this is the same grant proposed again.
            return Err(SpecError::Conflict {
                field: "secret".into(),
                reason: "a token with this secret exists".into(),
            }
            .into());
        }
        self.last_token_id += 1;
        let id = TokenId(self.last_token_id);
        self.tokens.insert(
            id,
            TokenRecord {
                id,
                name: grant.name.clone(),
                role: grant.role,
                tenants: grant.tenants.clone(),
                secret_sha256: grant.secret_sha256,
                created_at_ms: cx.now_ms,
                expires_at_ms: grant.expires_at_ms,
            },
        );
        self.tokens_by_secret.insert(grant.secret_sha256, id);
        self.tokens_bootstrapped = true;
        cx.emit(Event::AuthGranted {
            token: id,
            name: grant.name.clone(),
            role: grant.role,
            tenants: grant.tenants.clone(),
        });
        Ok(Response::TokenCreated { id })
    }

    pub(crate) fn revoke_token(&mut self, cx: &mut EntryContext, id: TokenId) -> Handled {
        match self.tokens.remove(&id) {
            Some(t) => {
                self.tokens_by_secret.remove(&t.secret_sha256);
                cx.emit(Event::AuthRevoked { token: id });
                Ok(Response::Done { changed: true })
            }
            None => Err(Rejection::UnknownToken(id)),
        }
    }

    /// The token with this id, if it exists (expired or not).
    pub fn token(&self, id: TokenId) -> Option<&TokenRecord> {
        self.tokens.get(&id)
    }

    /// The token whose secret hashes to `secret_sha256`. The caller hashes what it was sent
    /// first, so this lookup compares hashes, which tell nothing of any secret.
    pub fn token_by_secret(&self, secret_sha256: &[u8; 32]) -> Option<&TokenRecord> {
        self.tokens_by_secret
            .get(secret_sha256)
            .and_then(|id| self.tokens.get(id))
    }

    /// Every token, by id.
    pub fn tokens(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// Whether the first admin token was ever created.
    pub fn tokens_bootstrapped(&self) -> bool {
        self.tokens_bootstrapped
    }
}

#[cfg(test)]
mod tests {
    use crate::{ApplyContext, Command, Proposal, Rejection, Response, Role, State, TokenGrant, TokenId};
    use std::collections::BTreeSet;

    fn apply(state: &mut State, index: u64, command: Command) -> Response {
        applied(state, index, command).0
    }

    fn applied(state: &mut State, index: u64, command: Command) -> (Response, Vec<crate::Event>) {
        let ctx = ApplyContext {
            log_index: index,
            term: 1,
        };
        state.apply(ctx, &Proposal::new(1_000, command))
    }

    #[test]
    fn creating_and_revoking_a_token_are_audit_events_without_the_secret() {
        let mut s = State::default();
        let boot = Command::CreateToken {
            grant: grant("admin", Role::Admin, 1),
            bootstrap: true,
        };
        let (_, events) = applied(&mut s, 1, boot);
        assert_eq!(
            events,
            vec![crate::Event::AuthGranted {
                token: TokenId(1),
                name: "admin".into(),
                role: Role::Admin,
                tenants: BTreeSet::new(),
            }]
        );
        assert!(events[0].is_audit());
        let (_, events) = applied(&mut s, 2, Command::RevokeToken { id: TokenId(1) });
        assert_eq!(events, vec![crate::Event::AuthRevoked { token: TokenId(1) }]);
        let (_, events) = applied(&mut s, 3, Command::RevokeToken { id: TokenId(1) });
        assert!(events.is_empty(), "a refused revocation is no event");
    }

    fn grant(name: &str, role: Role, secret: u8) -> TokenGrant {
        TokenGrant {
            name: name.into(),
            role,
            tenants: BTreeSet::new(),
            secret_sha256: [secret; 32],
            expires_at_ms: None,
        }
    }

    #[test]
    fn bootstrap_is_one_shot_and_tokens_are_created_and_revoked() {
        let mut s = State::default();
        assert!(!s.tokens_bootstrapped());
        let viewer_first = Command::CreateToken {
            grant: grant("ro", Role::Viewer, 9),
            bootstrap: true,
        };
        assert!(matches!(
            apply(&mut s, 1, viewer_first),
            Response::Rejected(Rejection::Invalid(_))
        ));
        let boot = Command::CreateToken {
            grant: grant("admin", Role::Admin, 1),
            bootstrap: true,
        };
        assert_eq!(
            apply(&mut s, 2, boot.clone()),
            Response::TokenCreated { id: TokenId(1) }
        );
        assert!(s.tokens_bootstrapped());
        let again = Command::CreateToken {
            grant: grant("admin2", Role::Admin, 2),
            bootstrap: true,
        };
        assert_eq!(
            apply(&mut s, 3, again),
            Response::Rejected(Rejection::AlreadyBootstrapped)
        );
        let ci = Command::CreateToken {
            grant: grant("ci", Role::Submitter, 3),
            bootstrap: false,
        };
        assert_eq!(apply(&mut s, 4, ci), Response::TokenCreated { id: TokenId(2) });
        assert_eq!(s.tokens().count(), 2);
        assert_eq!(s.token(TokenId(2)).map(|t| t.role), Some(Role::Submitter));
        assert_eq!(s.token_by_secret(&[3; 32]).map(|t| t.id), Some(TokenId(2)));
        assert_eq!(
            apply(&mut s, 5, Command::RevokeToken { id: TokenId(2) }),
            Response::Done { changed: true }
        );
        assert_eq!(s.token_by_secret(&[3; 32]).map(|t| t.id), None);
        assert_eq!(
            apply(&mut s, 6, Command::RevokeToken { id: TokenId(2) }),
            Response::Rejected(Rejection::UnknownToken(TokenId(2)))
        );
        // Revoking every token does not open bootstrap again.
        apply(&mut s, 7, Command::RevokeToken { id: TokenId(1) });
        assert_eq!(
            apply(&mut s, 8, boot),
            Response::Rejected(Rejection::AlreadyBootstrapped)
        );
    }

    #[test]
    fn a_token_expiring_in_the_past_or_with_bad_names_is_refused() {
        let mut s = State::default();
        let mut past = grant("old", Role::Viewer, 4);
        past.expires_at_ms = Some(1_000);
        let refused = apply(
            &mut s,
            1,
            Command::CreateToken {
                grant: past,
                bootstrap: false,
            },
        );
        assert!(
            matches!(refused, Response::Rejected(Rejection::Invalid(_))),
            "{refused:?}"
        );
        let mut unnamed = grant("", Role::Viewer, 5);
        unnamed.tenants = BTreeSet::from(["web".to_string()]);
        let refused = apply(
            &mut s,
            2,
            Command::CreateToken {
                grant: unnamed,
                bootstrap: false,
            },
        );
        assert!(
            matches!(refused, Response::Rejected(Rejection::Invalid(_))),
            "{refused:?}"
        );
        assert_eq!(s.tokens().count(), 0);
    }
}
