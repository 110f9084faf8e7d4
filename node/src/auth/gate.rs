//! The check in front of every route: the caller's bearer token, looked up by its SHA-256 in
//! this node's applied state, live at the cluster's time, of a role the route admits. The
//! caller found is put in the request's extensions for the handler (`Caller`), and its token
//! is the request's actor while the handler runs (`current_actor`): every proposal the handler
//! makes names it, and `apply` records each change it makes as an `Audited` event.

use super::{Permission, TokenSecret};
use crate::api::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Role, TokenId};
use std::collections::BTreeSet;

/// Whether the API asks for tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every caller may do everything: for a trusted network only; logged as a warning.
    #[default]
    None,
    /// Every route but the public ones needs a live token of a role it admits.
    Tokens,
}

/// Who is calling, as the gate found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub token: TokenId,
    pub name: String,
    pub role: Role,
    pub tenants: BTreeSet<String>,
}

/// The state a route's gate works with: the node, and what the route asks.
#[derive(Clone)]
pub struct Gate {
    pub app: AppState,
    pub permission: Permission,
}

tokio::task_local! {
    /// The token of the request the current task serves, set by `check` around the handler.
    static ACTOR: TokenId;
}

/// The API token whose request the current task serves, if its caller was authenticated
/// (none under `--auth none`, on a public route, or outside a request). A handler's work
/// stays in its task, so `Proposer::commit` finds it here, as it finds the request's trace.
pub fn current_actor() -> Option<TokenId> {
    ACTOR.try_with(|token| *token).ok()
}

/// A join token a caller presented where the route admits one: the handler redeems it.
#[derive(Clone, Debug)]
pub struct JoinBearer(pub super::JoinSecret);

pub async fn check(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    if matches!(gate.permission, Permission::AdminOrJoinToken | Permission::JoinToken)
        && let Some(join) = join_bearer(request.headers())
    {
        request.extensions_mut().insert(JoinBearer(join));
        return next.run(request).await;
    }
    // The CA is handed to a join token's bearer alone, with or without --auth.
    if gate.permission != Permission::JoinToken
        && (gate.app.auth == AuthMode::None || gate.permission == Permission::Public)
    {
        return next.run(request).await;
    }
    // A browser's session cookie changes nothing without the session's CSRF value.
    if bearer_text(request.headers()).is_none()
        && let Some(Ok(secret)) = super::session_cookie::presented(request.headers())
        && !super::session_cookie::csrf_admits(request.method(), request.headers(), &secret)
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "a change made with the console's session cookie must carry its X-Flotilla-Csrf header",
        )
        .field(super::session_cookie::CSRF_HEADER)
        .into_response();
    }
    match caller(&gate.app, request.headers(), gate.permission) {
        Ok(caller) => {
            let token = caller.token;
            request.extensions_mut().insert(caller);
            ACTOR.scope(token, next.run(request)).await
        }
        Err(e) => e.into_response(),
    }
}

/// Checks that `headers` carry the pre-shared admin token (`--admin-token-file`): what
/// `POST /v1/cluster/init`, public while no cluster exists, asks for on a node given one. The
/// hashes are compared in constant time.
pub fn check_preshared(headers: &HeaderMap, preshared: &TokenSecret) -> Result<(), ApiError> {
    let matches = bearer(headers).and_then(Result::ok).is_some_and(|p| {
        use subtle::ConstantTimeEq;
        bool::from(p.sha256().ct_eq(&preshared.sha256()))
    });
    if matches {
        Ok(())
    } else {
        Err(unauthenticated(
            "this node was given the cluster's admin token (--admin-token-file): send it as Authorization: Bearer <token>".into(),
        ))
    }
}

/// What follows `Bearer ` in an `Authorization` header: `None` without the header, `Some(None)`
/// when it is no bearer credential.
fn bearer_text(headers: &HeaderMap) -> Option<Option<&str>> {
    let value = headers.get(header::AUTHORIZATION)?;
    Some(
        value
            .to_str()
            .unwrap_or_default()
            .trim()
            .strip_prefix("Bearer ")
            .map(str::trim),
    )
}

/// The secret an `Authorization: Bearer` header carries: `None` without the header, an error
/// when it is not `Bearer flt_<64 hex digits>`.
fn bearer(headers: &HeaderMap) -> Option<Result<TokenSecret, ()>> {
    bearer_text(headers).map(|text| text.and_then(TokenSecret::parse).ok_or(()))
}

/// The join secret an `Authorization: Bearer fjt_...` header carries, if it is one.
fn join_bearer(headers: &HeaderMap) -> Option<super::JoinSecret> {
    bearer_text(headers).flatten().and_then(super::JoinSecret::parse)
}

pub(crate) fn unauthenticated(message: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message).field("Authorization")
}

/// The caller `headers` name (an `Authorization: Bearer` header, else the console's session
/// cookie), if the route's `permission` admits them.
pub fn caller(app: &AppState, headers: &HeaderMap, permission: Permission) -> Result<Caller, ApiError> {
    let presented = bearer(headers).or_else(|| super::session_cookie::presented(headers));
    let data = app.machine.read();
    let state = &data.state;
    let Some(presented) = presented else {
        let hint = if state.tokens_bootstrapped() {
            ""
        } else {
            "; no token exists yet: create the first with POST /v1/tokens/bootstrap (flotilla token bootstrap)"
        };
        return Err(unauthenticated(format!(
            "this route needs a token ({}): send Authorization: Bearer <token> (flotilla --token or FLOTILLA_TOKEN){hint}",
            permission.describe()
        )));
    };
    let secret = presented.map_err(|()| {
        unauthenticated(
            "the Authorization header (or the console's session cookie) is not `Bearer flt_<64 hex digits>`".into(),
        )
    })?;
    caller_in(app, state, &secret, permission)
}

/// The caller holding `secret` (the console's sign-in form presents one), if `permission`
/// admits them: the same checks as for a bearer token.
pub fn secret_caller(app: &AppState, secret: &TokenSecret, permission: Permission) -> Result<Caller, ApiError> {
    caller_in(app, &app.machine.read().state, secret, permission)
}

/// The token with `secret` in `state`, live at the cluster's time, of a role `permission` admits.
fn caller_in(
    app: &AppState,
    state: &flotilla_state_machine::State,
    secret: &TokenSecret,
    permission: Permission,
) -> Result<Caller, ApiError> {
    let Some(token) = state.token_by_secret(&secret.sha256()) else {
        // A node that knows no token at all has most likely not caught up with its cluster
        // (a restarted node with an empty disk, a learner): "unknown token" would be a lie.
        if !state.tokens_bootstrapped() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_tokens_yet",
                "this node knows no token yet (it has not caught up with its cluster, or the cluster has none): retry, or ask another node",
            )
            .retry_after(1));
        }
        return Err(unauthenticated("unknown or revoked token".into()));
    };
    let now_ms = app.proposer.now_ms();
    if !token.live_at(now_ms) {
        return Err(unauthenticated(format!(
            "token {} ({}) expired at {} ms since the epoch",
            token.id,
            token.name,
            token.expires_at_ms.unwrap_or_default()
        )));
    }
    if !permission.admits(token.role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {} ({}) is a {}; this route needs {}",
                token.id,
                token.name,
                token.role,
                permission.describe()
            ),
        ));
    }
    Ok(Caller {
        token: token.id,
        name: token.name.clone(),
        role: token.role,
        tenants: token.tenants.clone(),
    })
}
