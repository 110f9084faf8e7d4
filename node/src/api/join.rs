//! Join tokens over REST: an admin makes one (`POST /v1/cluster/join-tokens`); a new node
//! presents it to fetch the cluster CA (`POST /v1/cluster/ca`), then to be added
//! (`POST /v1/cluster/members`, which redeems it: `cluster::add_member`). The joining node
//! pins the CA by the hash this route hands out with the token (`tls/join.rs`).

use super::{ApiError, AppState, input_body::InputBody};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{Command, Response as SmResponse};

/// A join token's lifetime when none is asked for.
pub const DEFAULT_JOIN_TOKEN_TTL_S: u64 = 3600;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// Seconds the token may be used for (default 3600, at most 86400).
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// Makes a single-use join token; its secret is in this answer and nowhere else.
#[utoipa::path(post, path = "/v1/cluster/join-tokens", tag = "cluster",
    request_body(content = super::openapi::CreateJoinTokenDoc, content_type = "application/json"),
    responses((status = 201, description = "the token, its expiry and the CA's hash to pin"),
              (status = 307, description = "sent to a follower: see Location"),
              (status = 409, description = "too many live join tokens", body = super::openapi::ErrorBodyDoc),
              (status = 422, description = "ttl_s out of range", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn create(
    State(app): State<AppState>,
    InputBody(req): InputBody<CreateJoinToken>,
) -> Result<Response, ApiError> {
    super::cluster::leader_redirect(&app, "/v1/cluster/join-tokens")?;
    // The range (1 s to `MAX_JOIN_TOKEN_TTL_MS`) is checked in apply: 422 naming `ttl_s`.
    let ttl_ms = req.ttl_s.unwrap_or(DEFAULT_JOIN_TOKEN_TTL_S).saturating_mul(1000);
    let secret = crate::auth::JoinSecret::generate();
    let command = Command::CreateJoinToken {
        secret_sha256: secret.sha256(),
        ttl_ms,
    };
    let expires_at_ms = match app.proposer.commit(command).await? {
        SmResponse::JoinTokenCreated { expires_at_ms } => expires_at_ms,
        SmResponse::Rejected(r) => return Err(r.into()),
        other => return Err(super::unexpected(other)),
    };
    let ca_sha256 = app.tls.as_ref().map(|tls| tls.cert().ca().signing_sha256());
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "join_token": secret.reveal(),
            "expires_at_ms": expires_at_ms,
            "ca_sha256": ca_sha256,
        })),
    )
        .into_response())
}

/// The cluster CA (certificates and key, PEM) for the bearer of a live, unused join token:
/// what a node joining with `--join-token` runs its TLS with. Nothing is redeemed here.
#[utoipa::path(post, path = "/v1/cluster/ca", tag = "cluster",
    responses((status = 200, description = "the CA's certificates and key"),
              (status = 401, description = "no join token, or an unknown, expired or used one", body = super::openapi::ErrorBodyDoc),
              (status = 409, description = "the cluster runs without TLS", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn ca(
    State(app): State<AppState>,
    join: Option<axum::Extension<crate::auth::gate::JoinBearer>>,
) -> Result<Response, ApiError> {
    // The gate lets this route's callers through only with a join token (`JoinBearer`).
    let Some(axum::Extension(crate::auth::gate::JoinBearer(secret))) = join else {
        return Err(crate::auth::gate::unauthenticated(
            "send the join token as Authorization: Bearer fjt_<64 hex digits> (flotilla cluster join-token create)"
                .into(),
        ));
    };
    let checked = app
        .machine
        .read()
        .state
        .join_token_check(&secret.sha256(), app.proposer.now_ms());
    if let Err(refusal) = checked {
        return Err(
            ApiError::new(StatusCode::UNAUTHORIZED, "join_token_refused", refusal.describe()).field("Authorization"),
        );
    }
    let Some(tls) = &app.tls else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_tls",
            "this cluster runs --insecure-plaintext: there is no CA to hand out",
        ));
    };
    let cert = tls.cert();
    let (certificates, key) = cert.ca().pem();
    Ok(Json(serde_json::json!({ "ca_certificates": certificates, "ca_key": key })).into_response())
}
