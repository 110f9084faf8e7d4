//! `POST /v1/hooks/{tenant}/{repository}`: a forge's webhook delivery. No API token: the
//! delivery proves itself with the repository's webhook secret, as its forge signs
//! (`source/forge.rs`); a bad signature is refused with nothing recorded.
//!
//! A push, a tag or a pull request runs the pipeline file of its commit, once per delivery id
//! across the forge's retries and leader changes (the id is the submission's idempotency
//! key). Anything else is answered 202 and recorded on the repository with the reason, as is
//! a delivery that should have run something and could not (no pipeline file, an invalid
//! one, a repository that could not be fetched), so a push that ran nothing says why.

use super::input_body::RawBody;
use super::{ApiError, AppState};
use crate::source::PipelineFileError;
use crate::source::forge::{self, Delivered, HookError, Trigger, Verdict};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::{
    Command, Delivery, DeliveryOutcome, PipelineSpec, Repository, Response as SmResponse, Source,
};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Where a forge posts the deliveries of repository `name` of `tenant`.
pub fn webhook_path(tenant: &str, name: &str) -> String {
    format!("/v1/hooks/{tenant}/{name}")
}

/// The idempotency key of the pipeline a delivery starts: the repository and the forge's
/// delivery id (hashed when together they would be longer than a key may be).
pub fn delivery_key(repository: &str, delivery: &str) -> String {
    let key = format!("hook:{repository}:{delivery}");
    if key.len() <= 128 {
        key
    } else {
        format!("hook:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

fn hook_error(e: HookError) -> ApiError {
    match e {
        HookError::BadSignature => ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string()),
        HookError::MissingHeader(_) => {
            let field = e.field().to_string();
            ApiError::bad_request(&field, e.to_string())
        }
        HookError::BadPayload(_) => ApiError::bad_request("body", e.to_string()),
    }
}

#[utoipa::path(post, path = "/v1/hooks/{tenant}/{repository}", tag = "repositories",
    params(("tenant" = String, Path), ("repository" = String, Path)),
    request_body(content = String, description = "the forge's event, as it sends it (JSON)", content_type = "application/json"),
    responses((status = 201, description = "a pipeline was started"), (status = 200, description = "a repeated delivery: the pipeline it started"),
              (status = 202, description = "recorded, nothing to run; or still fetching after 8 s (the repository's deliveries say what came of it)"), (status = 401, description = "bad signature", body = super::openapi::ErrorBodyDoc),
              (status = 404, description = "no such repository", body = super::openapi::ErrorBodyDoc),
              (status = 422, description = "no pipeline file or an invalid one (recorded)", body = super::openapi::ErrorBodyDoc),
              (status = 502, description = "the repository could not be fetched (recorded; the forge may retry)", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors))]
pub async fn receive(
    State(app): State<AppState>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    // A repository this node does not know may be one it has yet to apply (it was just
    // registered through another node): asked again after the leader's read index.
    if app.machine.read().state.repository(&tenant, &name).is_none() {
        app.read_barrier(Some("linearizable")).await?;
    }
    let (repo, secret) = {
        let data = app.machine.read();
        let repo = data
            .state
            .repository(&tenant, &name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?} has no repository {name:?}")))?;
        let secret = crate::secrets::open_one(
            app.keyring.as_deref(),
            &data.state,
            &repo.tenant,
            &repo.spec.webhook_secret,
        )
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "secrets_unavailable",
                format!("the webhook secret cannot be opened on this node: {e}"),
            )
        })?;
        (repo, secret)
    };
    let delivered = forge::receive(repo.spec.forge, secret.expose().as_bytes(), &headers, &body).map_err(hook_error)?;
    let Delivered { id, event, verdict } = delivered;
    let trigger = match verdict {
        Verdict::Ignore(reason) => {
            record(
                &app,
                &repo,
                &id,
                &event,
                DeliveryOutcome::Ignored { reason: reason.clone() },
            )
            .await?;
            let body = serde_json::json!({ "delivery": id, "ignored": reason });
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        Verdict::Run(trigger) => trigger,
    };
    // A retry of a delivery that started its pipeline is answered without fetching again.
    if let Some(pipeline) = repo.deliveries.iter().find_map(|d| match d.outcome {
        DeliveryOutcome::Started { pipeline } if d.id == id => Some(pipeline),
        _ => None,
    }) {
        let body = serde_json::json!({ "delivery": id, "pipeline": pipeline, "duplicate": true });
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    // Fetching can take longer than a forge waits for an answer (GitHub gives up after 10 s,
    // and a dropped request would cancel the work): the delivery is handled in a task of its
    // own, which records its outcome whether or not anyone still waits for it.
    let Ok(slot) = HOOKS_IN_PROGRESS.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{MAX_HOOKS_IN_PROGRESS} deliveries are being handled; retry"),
        )
        .retry_after(5));
    };
    let task_id = id.clone();
    let handled = tokio::spawn(async move {
        let _slot = slot;
        match start(&app, &repo, &task_id, &trigger).await {
            Ok(response) => Ok(response),
            Err(failure) => {
                let reason = failure.message().to_string();
                record(&app, &repo, &task_id, &event, DeliveryOutcome::Failed { reason }).await?;
                Err(failure)
            }
        }
    });
    match tokio::time::timeout(Duration::from_millis(ANSWER_WITHIN_MS), handled).await {
        Ok(Ok(answer)) => answer,
        // The node is stopping: the delivery may be sent again.
        Ok(Err(stopped)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "interrupted",
            format!("handling the delivery was interrupted: {stopped}"),
        )
        .retry_after(1)),
        Err(_) => {
            let body = serde_json::json!({ "delivery": id, "accepted": "still fetching; the repository's deliveries will say what came of it" });
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
    }
}

/// Deliveries handled at once on a node (each may be fetching a repository).
const MAX_HOOKS_IN_PROGRESS: usize = 16;
static HOOKS_IN_PROGRESS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_HOOKS_IN_PROGRESS)));
/// How long a delivery's request waits for its outcome before it is answered 202 (forges
/// give up at about 10 s).
const ANSWER_WITHIN_MS: u64 = 8_000;

/// Reads the pipeline file at the trigger's commit and submits it from source.
async fn start(app: &AppState, repo: &Repository, id: &str, trigger: &Trigger) -> Result<Response, ApiError> {
    let source = Source {
        repository: repo.spec.name.clone(),
        commit: trigger.commit.clone(),
        reference: Some(trigger.reference.clone()),
        event: trigger.event,
        author: trigger.author.clone(),
        pull_request: trigger.pull_request,
        delivery: Some(id.to_string()),
    };
    let spec = read_pipeline(app, repo, &source).await?;
    submit(app, repo, spec, source, Some(delivery_key(&repo.spec.name, id))).await
}

/// The pipeline file of `repo` at `source`'s commit, parsed.
pub(crate) async fn read_pipeline(
    app: &AppState,
    repo: &Repository,
    source: &Source,
) -> Result<PipelineSpec, ApiError> {
    let token = fetch_token(app, repo)?;
    app.sources
        .read_spec(repo, token, &source.commit, source.reference.as_deref())
        .await
        .map_err(|e| {
            let message = e.to_string();
            match e {
                PipelineFileError::Fetch { source, .. } => {
                    let status = if source.is_transient() {
                        StatusCode::BAD_GATEWAY
                    } else {
                        StatusCode::UNPROCESSABLE_ENTITY
                    };
                    ApiError::new(status, "fetch_failed", message).field("url")
                }
                PipelineFileError::Missing { .. } => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_pipeline_file", message).field("pipeline_path")
                }
                PipelineFileError::Invalid { .. } => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_pipeline_file", message)
                        .field("pipeline_path")
                }
            }
        })
}

/// `repo`'s fetch token, opened on this node (503 where it cannot be).
pub(crate) fn fetch_token(
    app: &AppState,
    repo: &Repository,
) -> Result<Option<flotilla_providers::SecretValue>, ApiError> {
    crate::source::token(&app.machine.read().state, app.keyring.as_deref(), repo).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets_unavailable",
            format!("the fetch token cannot be opened on this node: {e}"),
        )
    })
}

/// Submits `spec` from `source` as `repo`'s tenant.
pub(crate) async fn submit(
    app: &AppState,
    repo: &Repository,
    spec: PipelineSpec,
    source: Source,
    key: Option<String>,
) -> Result<Response, ApiError> {
    let command = Command::SubmitPipeline {
        tenant: repo.tenant.clone(),
        idempotency_key: key.clone(),
        spec: spec.clone(),
        source: Some(Box::new(source.clone())),
        rerun_of: None,
    };
    match super::pipelines::commit_submission(app, command, key.map(|k| (k, spec))).await? {
        SmResponse::Submitted {
            pipeline,
            jobs,
            duplicate,
        } => {
            let extra = serde_json::json!({ "delivery": source.delivery, "commit": source.commit });
            Ok(super::pipelines::submitted_answer(pipeline, &jobs, duplicate, extra))
        }
        SmResponse::Rejected(r) => {
            let e: ApiError = r.into();
            Err(ApiError::new(
                e.status(),
                "invalid_pipeline_file",
                format!("{} at {}: {}", repo.spec.pipeline_path, source.commit, e.message()),
            )
            .field("pipeline_path"))
        }
        other => Err(super::unexpected(other)),
    }
}

async fn record(
    app: &AppState,
    repo: &Repository,
    id: &str,
    event: &str,
    outcome: DeliveryOutcome,
) -> Result<(), ApiError> {
    let command = Command::RecordDelivery {
        tenant: repo.tenant.clone(),
        repository: repo.spec.name.clone(),
        delivery: Delivery {
            id: id.to_string(),
            event: event.to_string(),
            at_ms: app.proposer.now_ms(),
            outcome,
        },
    };
    super::done(app.proposer.commit(command).await?)?;
    Ok(())
}
