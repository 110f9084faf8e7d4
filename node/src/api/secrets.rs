//! `/v1/secrets`: a tenant's secrets, set and deleted by operators, listed by name (never by
//! value), and their keys rotated by admins.
//!
//! The node that receives a value seals it with its keyring before it proposes anything
//! (`secrets/keyring.rs`), so only ciphertext travels to the leader and into the log. No
//! route ever answers a value: jobs receive them through their providers.

use super::input_body::InputBody;
use super::pipelines::header;
use super::{ApiError, AppState, ReadQuery, parse_query, read_response};
use crate::auth::TenantScope;
use crate::auth::scope::TENANT_HEADER;
use crate::secrets::{Keyring, SecretError};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::secret::{MAX_SECRET_VALUE_BYTES, MIN_SECRET_VALUE_BYTES};
use flotilla_state_machine::{Command, Rejection, Response as SmResponse};

/// A secret's new value.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    pub value: String,
}

/// The keyring, or the error a node without `--secrets-key-file` answers.
fn keyring(app: &AppState) -> Result<&Keyring, ApiError> {
    app.keyring.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "secrets_disabled",
            "this node has no --secrets-key-file: it stores no secrets (give every node the same key file)",
        )
    })
}

fn sealing_error(e: SecretError) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "secret_keys", e.to_string())
}

#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    request_body(content = super::openapi::SecretDoc, content_type = "application/json"),
    responses((status = 200, description = "stored, sealed, as `version`"),
              (status = 409, description = "in use by a running job, or this node has no key file", body = super::openapi::ErrorBodyDoc),
              (status = 422, description = "invalid name or value", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn set(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
    InputBody(req): InputBody<SecretRequest>,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    let len = req.value.len();
    if !(MIN_SECRET_VALUE_BYTES..=MAX_SECRET_VALUE_BYTES).contains(&len) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!(
                "value: {len} bytes; a secret has {MIN_SECRET_VALUE_BYTES} to {MAX_SECRET_VALUE_BYTES} (shorter ones would mask common text in job output)"
            ),
        )
        .field("value"));
    }
    let ring = keyring(&app)?;
    // A rotation between reading the active key and committing retires the key read: seal
    // again under the new one (once; a second race is answered as the conflict it is).
    for round in 0..2 {
        let active = app.machine.read().state.active_data_key().cloned();
        let (key, new_data_key) = match active {
            Some(key) => (key, None),
            None => {
                let key = ring.new_data_key().map_err(sealing_error)?;
                (key.clone(), Some(key))
            }
        };
        let sealed = ring
            .seal(&tenant, &name, req.value.as_bytes(), &key)
            .map_err(sealing_error)?;
        let command = Command::SetSecret {
            tenant: tenant.clone(),
            name: name.clone(),
            sealed,
            new_data_key,
            expected_version: None,
        };
        match app.proposer.commit(command).await? {
            SmResponse::SecretSet { version } => {
                return Ok(
                    Json(serde_json::json!({ "tenant": tenant, "name": name, "version": version })).into_response(),
                );
            }
            SmResponse::Rejected(Rejection::UnknownDataKey(_)) if round == 0 => continue,
            SmResponse::Rejected(r) => return Err(r.into()),
            other => return Err(super::unexpected(other)),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        "the data key changed twice while the value was sealed; retry",
    ))
}

#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path),
        ("X-Flotilla-Tenant" = Option<String>, Header, description = "tenant; as for a submission")),
    responses((status = 200, description = "deleted"), (status = 404, description = "no such secret", body = super::openapi::ErrorBodyDoc),
              (status = 409, description = "in use by a running job", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn delete(
    State(app): State<AppState>,
    scope: TenantScope,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(header(&headers, TENANT_HEADER)?)?;
    let command = Command::DeleteSecret {
        tenant: tenant.clone(),
        name: name.clone(),
    };
    let changed = super::done(app.proposer.commit(command).await?)?;
    Ok(Json(serde_json::json!({ "tenant": tenant, "name": name, "deleted": changed })).into_response())
}

#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", params(("consistency" = Option<String>, Query, description = "`local` (default) or `linearizable`")),
    responses((status = 200, description = "the secrets of the caller's tenants: names and versions, never values"), super::openapi::StandardErrors))]
pub async fn list(
    State(app): State<AppState>,
    scope: TenantScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let items: Vec<serde_json::Value> = data
        .state
        .secrets()
        .filter(|(tenant, _, _)| scope.admits(tenant))
        .map(|(tenant, name, record)| {
            serde_json::json!({
                "tenant": tenant,
                "name": name,
                "version": record.version,
                "updated_at_ms": record.updated_at_ms,
            })
        })
        .collect();
    Ok(read_response(
        applied,
        &serde_json::json!({ "items": items, "applied_index": applied }),
    ))
}

/// Seals every secret again under a new data key wrapped by this node's first key, after
/// which the old data keys (and the key-encryption keys that wrapped them) are no longer
/// needed. Resumable: a rotation cut short is finished by running it again.
#[utoipa::path(post, path = "/v1/secrets/rotate-keys", tag = "secrets",
    responses((status = 200, description = "how many secrets were sealed again, and the new data key's id"),
              (status = 307, description = "sent to a follower: see Location"),
              (status = 409, description = "this node lacks a key that wraps a secret's data key", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors))]
pub async fn rotate_keys(State(app): State<AppState>) -> Result<Response, ApiError> {
    super::cluster::leader_redirect(&app, "/v1/secrets/rotate-keys")?;
    let ring = keyring(&app)?;
    let key = ring.new_data_key().map_err(sealing_error)?;
    super::done(app.proposer.commit(Command::RotateDataKey { key: key.clone() }).await?)?;
    let secrets: Vec<_> = {
        let data = app.machine.read();
        let state = &data.state;
        state
            .secrets()
            .filter(|(_, _, record)| record.sealed.key_id != key.id)
            .filter_map(|(tenant, name, record)| {
                let old = state.data_key(&record.sealed.key_id)?.clone();
                Some((tenant.to_string(), name.to_string(), record.clone(), old))
            })
            .collect()
    };
    let (mut resealed, mut changed_meanwhile) = (0u64, 0u64);
    for (tenant, name, record, old) in secrets {
        let value = ring.open(&tenant, &name, &record.sealed, &old).map_err(sealing_error)?;
        let sealed = ring
            .seal(&tenant, &name, value.as_bytes(), &key)
            .map_err(sealing_error)?;
        let command = Command::SetSecret {
            tenant,
            name,
            sealed,
            new_data_key: None,
            expected_version: Some(record.version),
        };
        match app.proposer.commit(command).await? {
            SmResponse::SecretSet { .. } => resealed += 1,
            // Set or deleted since it was read: its new value is sealed under the new key, or
            // it is gone; either way it needs nothing more.
            SmResponse::Rejected(Rejection::SecretChanged { .. } | Rejection::UnknownSecret { .. }) => {
                changed_meanwhile += 1
            }
            SmResponse::Rejected(r) => return Err(r.into()),
            other => return Err(super::unexpected(other)),
        }
    }
    let data_keys: Vec<String> = {
        let data = app.machine.read();
        data.state
            .secrets()
            .map(|(_, _, r)| r.sealed.key_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    Ok(Json(serde_json::json!({
        "data_key": key.id,
        "kek_id": key.kek_id,
        "resealed": resealed,
        "changed_meanwhile": changed_meanwhile,
        "data_keys_in_use": data_keys,
    }))
    .into_response())
}
