//! A request-body extractor for JSON or YAML whose errors name the offending field
//! (`jobs[0].resources.cpu_millis`, plus the line for YAML) and use the right status: 415 other
//! content types, 413 too large, 400 malformed, 422 wrong shape.
//!
//! Parsing runs on tokio's blocking pool, never on the threads that serve requests and Raft's
//! heartbeats, at most `PARSE_SLOTS` bodies at once and within `PARSE_BUDGET_MS`; a YAML body
//! first passes `yaml_guard` (depth, node count, alias expansion).

use super::error::ApiError;
use super::yaml_guard::{self, YamlBounds, YamlGuardError};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

pub struct InputBody<T>(pub T);

/// Longest a request body may take to arrive, whole.
pub const BODY_READ_TIMEOUT_MS: u64 = 10_000;

/// Bodies parsed at once; a request waits up to `PARSE_BUDGET_MS` for a slot.
const PARSE_SLOTS: usize = 2;
static PARSE_SLOTS_FREE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PARSE_SLOTS);
/// Longest a body may take to parse, waiting for a slot included.
pub const PARSE_BUDGET_MS: u64 = 5_000;

/// Parses `bytes` with `parse` on the blocking pool, within the slots and the time budget.
pub(crate) async fn parse_off_thread<T: Send + 'static>(
    bytes: Bytes,
    parse: impl FnOnce(&[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let budget = std::time::Duration::from_millis(PARSE_BUDGET_MS);
    let too_slow = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("the body could not be parsed within {PARSE_BUDGET_MS} ms"),
        )
        .retry_after(1)
    };
    let work = async {
        let _slot = PARSE_SLOTS_FREE.acquire().await.map_err(|_| too_slow())?;
        tokio::task::spawn_blocking(move || parse(&bytes))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "parse_failed", e.to_string()))?
    };
    tokio::time::timeout(budget, work).await.map_err(|_| too_slow())?
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Yaml,
}

/// Like `InputBody`, keeping the text of a YAML body so later errors can name its lines.
pub struct SourcedBody<T> {
    pub value: T,
    /// The body as sent, when it was YAML.
    pub yaml: Option<String>,
}

/// A body as sent, whatever its type (a forge's webhook delivery), within the same whole-body
/// deadline and size limit as any other.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        bytes_in_time(req, state).await.map(RawBody)
    }
}

/// The whole body, within `BODY_READ_TIMEOUT_MS`: a body trickled a byte at a time would
/// otherwise hold a request slot for as long as the client likes.
async fn bytes_in_time<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    tokio::time::timeout(
        std::time::Duration::from_millis(BODY_READ_TIMEOUT_MS),
        Bytes::from_request(req, state),
    )
    .await
    .map_err(|_| {
        let message = format!("the body did not arrive within {BODY_READ_TIMEOUT_MS} ms");
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message).field("body")
    })?
    .map_err(|e| ApiError::new(e.status(), "body_rejected", e.body_text()).field("body"))
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<(Format, Bytes), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let format = match content_type.split(';').next().unwrap_or("").trim() {
        "application/json" => Format::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => Format::Yaml,
        _ => {
            let message = format!("send the body as application/json or application/yaml (got {content_type:?})");
            return Err(
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
                    .field("Content-Type"),
            );
        }
    };
    Ok((format, bytes_in_time(req, state).await?))
}

impl<S: Send + Sync, T: DeserializeOwned + Send + 'static> FromRequest<S> for SourcedBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match read_body(req, state).await? {
            (Format::Json, bytes) => Ok(SourcedBody {
                value: parse_off_thread(bytes, parse).await?,
                yaml: None,
            }),
            (Format::Yaml, bytes) => {
                let (value, text) =
                    parse_off_thread(bytes, |b| Ok((parse_yaml(b)?, String::from_utf8_lossy(b).into_owned()))).await?;
                Ok(SourcedBody {
                    value,
                    yaml: Some(text),
                })
            }
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send + 'static> FromRequest<S> for InputBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match read_body(req, state).await? {
            (Format::Json, bytes) => parse_off_thread(bytes, parse).await.map(InputBody),
            (Format::Yaml, bytes) => parse_off_thread(bytes, parse_yaml).await.map(InputBody),
        }
    }
}

fn field_of(path: String) -> String {
    if path == "." { "body".to_string() } else { path }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = field_of(e.path().to_string());
        let inner = e.into_inner();
        let (status, code) = if inner.is_syntax() || inner.is_eof() {
            (StatusCode::BAD_REQUEST, "malformed_json")
        } else {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
        };
        ApiError::new(status, code, format!("{field}: {inner}")).field(field)
    })?;
    de.end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()).field("body"))?;
    Ok(value)
}

/// Parses a YAML body after `yaml_guard` has bounded its depth, size and aliases.
pub fn parse_yaml<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_yaml",
            format!("body: not UTF-8 ({e})"),
        )
        .field("body")
    })?;
    yaml_guard::check(text, &YamlBounds::DEFAULT).map_err(|e| {
        let (status, code) = match e {
            YamlGuardError::Malformed { .. } => (StatusCode::BAD_REQUEST, "malformed_yaml"),
            YamlGuardError::ExpandsTooFar { .. } | YamlGuardError::TooManyNodes { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            YamlGuardError::TooDeep { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "too_deep"),
        };
        ApiError::new(status, code, format!("body: {e}"))
            .field("body")
            .line(e.line())
    })?;
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = field_of(e.path().to_string());
        let inner = e.into_inner();
        // serde_norway's message carries "at line L column C" when it knows the place.
        // serde's own messages for a document of the wrong shape (as opposed to bad YAML).
        let message = inner.to_string();
        let structural = [
            "invalid type",
            "invalid value",
            "invalid length",
            "unknown field",
            "unknown variant",
            "missing field",
        ]
        .iter()
        .any(|m| message.contains(m));
        let (status, code) = if structural {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
        } else {
            (StatusCode::BAD_REQUEST, "malformed_yaml")
        };
        ApiError::new(status, code, format!("{field}: {inner}")).field(field)
    })
}
