//! `/v1/tokens`: the cluster's API tokens. The first admin token comes from bootstrap (once,
//! also done by `cluster init`); admins create, list and revoke the others. A secret is in the
//! answer that creates it and nowhere else: lists show names, roles, tenants and expiries.

use super::input_body::InputBody;
use super::{ApiError, AppState, unexpected};
use crate::auth::TokenSecret;
use crate::raft::proposer::Proposer;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Command, Response as SmResponse, Role, TokenGrant, TokenId, TokenRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The name of the token bootstrap creates.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";
/// The name of an admin token recovered with `--recover-admin-token`.
pub const RECOVERED_TOKEN_NAME: &str = "recovered-admin";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapRequest {
    /// The secret to use (`flt_` and 64 hex digits), for deployments that hand it to every
    /// node and client beforehand; a new random one when absent.
    #[serde(default)]
    pub secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    /// `viewer`, `submitter`, `operator` or `admin`.
    pub role: String,
    /// Tenants it may act in; none or absent: every tenant.
    #[serde(default)]
    pub tenants: BTreeSet<String>,
    /// Lifetime in milliseconds from now; absent: until revoked.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// A token as lists show it: everything but its secret.
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub tenants: BTreeSet<String>,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        TokenView {
            id: t.id.to_string(),
            name: t.name.clone(),
            role: t.role,
            tenants: t.tenants.clone(),
            created_at_ms: t.created_at_ms,
            expires_at_ms: t.expires_at_ms,
        }
    }
}

/// Commits `grant` (the cluster's first admin token when `bootstrap`); its id.
async fn commit_grant(proposer: &Proposer, grant: TokenGrant, bootstrap: bool) -> Result<TokenId, ApiError> {
    match proposer.commit(Command::CreateToken { grant, bootstrap }).await? {
        SmResponse::TokenCreated { id } => Ok(id),
        SmResponse::Rejected(r) => Err(r.into()),
        other => Err(unexpected(other)),
    }
}

/// The grant of the cluster's first admin token, with `secret`.
fn bootstrap_grant(secret: &TokenSecret) -> TokenGrant {
    TokenGrant {
        name: BOOTSTRAP_TOKEN_NAME.into(),
        role: Role::Admin,
        tenants: BTreeSet::new(),
        secret_sha256: secret.sha256(),
        expires_at_ms: None,
    }
}

/// Commits the cluster's first admin token with `secret`.
pub async fn commit_bootstrap(proposer: &Proposer, secret: &TokenSecret) -> Result<TokenId, ApiError> {
    commit_grant(proposer, bootstrap_grant(secret), true).await
}

/// Commits an admin token with `secret` to a cluster that has its first token already: the
/// recovery of a lost admin token (`--recover-admin-token`).
pub async fn commit_recovered(proposer: &Proposer, secret: &TokenSecret) -> Result<TokenId, ApiError> {
    let grant = TokenGrant {
        name: RECOVERED_TOKEN_NAME.into(),
        ..bootstrap_grant(secret)
    };
    commit_grant(proposer, grant, false).await
}

/// The answer that hands out a new token: what lists show of it, and its secret, this once.
fn created(id: TokenId, grant: TokenGrant, secret: &TokenSecret, created_at_ms: u64) -> Response {
    let view = TokenView {
        id: id.to_string(),
        name: grant.name,
        role: grant.role,
        tenants: grant.tenants,
        created_at_ms,
        expires_at_ms: grant.expires_at_ms,
    };
    let mut body = serde_json::to_value(view).unwrap_or_default();
    body["token"] = serde_json::json!(secret.reveal());
    (StatusCode::CREATED, Json(body)).into_response()
}

#[utoipa::path(post, path = "/v1/tokens/bootstrap", tag = "tokens", request_body(content = Option<super::openapi::TokenBootstrapDoc>, content_type = "application/json"),
    responses((status = 201, description = "the first admin token; its secret (`token`) is shown this once"),
              (status = 409, description = "a first token was created already", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn bootstrap(State(app): State<AppState>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    if app.founding.admin_token.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "preshared",
            "this cluster's first admin token is pre-shared (--admin-token-file): use that one",
        ));
    }
    let request: BootstrapRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BootstrapRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("body", format!("not a bootstrap request: {e}")))?
    };
    let secret = match request.secret {
        None => None,
        Some(text) => Some(
            TokenSecret::parse(&text)
                .ok_or_else(|| ApiError::bad_request("secret", "a secret is `flt_` and 64 lowercase hex digits"))?,
        ),
    };
    let secret = secret.unwrap_or_else(TokenSecret::generate);
    let id = commit_bootstrap(&app.proposer, &secret).await?;
    tracing::info!(token = %id, "the cluster's first admin token was created");
    Ok(created(id, bootstrap_grant(&secret), &secret, app.proposer.now_ms()))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body(content = super::openapi::TokenCreateDoc, content_type = "application/json"),
    responses((status = 201, description = "created; its secret (`token`) is shown this once"),
              (status = 422, description = "invalid name, role, tenants or lifetime", body = super::openapi::ErrorBodyDoc),
              (status = 409, description = "as many tokens as there may be", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn create(
    State(app): State<AppState>,
    InputBody(request): InputBody<CreateRequest>,
) -> Result<Response, ApiError> {
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!(
                "role {:?} is none of {}",
                request.role,
                Role::ALL.map(Role::name).join(", ")
            ),
        )
        .field("role")
    })?;
    let now_ms = app.proposer.now_ms();
    let expires_at_ms = match request.ttl_ms {
        None => None,
        Some(0) => return Err(ApiError::bad_request("ttl_ms", "a lifetime must be above 0 ms")),
        Some(ttl) => Some(
            now_ms
                .checked_add(ttl)
                .ok_or_else(|| ApiError::bad_request("ttl_ms", "too far ahead"))?,
        ),
    };
    let secret = TokenSecret::generate();
    let grant = TokenGrant {
        name: request.name,
        role,
        tenants: request.tenants,
        secret_sha256: secret.sha256(),
        expires_at_ms,
    };
    let id = commit_grant(&app.proposer, grant.clone(), false).await?;
    Ok(created(id, grant, &secret, now_ms))
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, description = "every token, without secrets"), super::openapi::StandardErrors))]
pub async fn list(State(app): State<AppState>) -> Result<Response, ApiError> {
    let data = app.machine.read();
    let items: Vec<TokenView> = data.state.tokens().map(TokenView::from).collect();
    let index = data.last_applied.map_or(0, |l| l.index);
    Ok(super::read_response(index, &serde_json::json!({ "items": items })))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path, description = "`t3` or `3`")),
    responses((status = 200, description = "revoked: no node accepts it from the entry that commits this"),
              super::openapi::UnknownId, super::openapi::StandardErrors))]
pub async fn revoke(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = TokenId(
        id.trim_start_matches('t')
            .parse()
            .map_err(|_| ApiError::bad_request("id", format!("{id:?} is not a token id")))?,
    );
    super::done(app.proposer.commit(Command::RevokeToken { id }).await?)?;
    Ok(Json(serde_json::json!({ "revoked": id.to_string() })).into_response())
}
