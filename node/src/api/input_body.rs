//! A request-body extractor for JSON or YAML whose errors name the offending field
//! (`jobs[0].resources.cpu_millis`, plus the line for YAML) and use the right status: 415 other
//! content types, 413 too large, 400 malformed, 422 wrong shape.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

pub struct InputBody<T>(pub T);

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

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<(Format, Bytes), ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let format = match content_type.split(';').next().unwrap_or("").trim() {
        "application/json" => Format::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => Format::Yaml,
        _ => {
            let message = format!("send the body as application/json or application/yaml (got {content_type:?})");
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message).field("Content-Type"));
        }
    };
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(|e| ApiError::new(e.status(), "body_rejected", e.body_text()))?;
    Ok((format, bytes))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for SourcedBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match read_body(req, state).await? {
            (Format::Json, bytes) => Ok(SourcedBody { value: parse(&bytes)?, yaml: None }),
            (Format::Yaml, bytes) => {
                let value = parse_yaml(&bytes)?;
                Ok(SourcedBody { value, yaml: Some(String::from_utf8_lossy(&bytes).into_owned()) })
            }
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for InputBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match read_body(req, state).await? {
            (Format::Json, bytes) => parse(&bytes).map(InputBody),
            (Format::Yaml, bytes) => parse_yaml(&bytes).map(InputBody),
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
    de.end().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()).field("body"))?;
    Ok(value)
}

pub fn parse_yaml<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = serde_norway::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = field_of(e.path().to_string());
        let inner = e.into_inner();
        // serde_norway's message carries "at line L column C" when it knows the place.
        // serde's own messages for a document of the wrong shape (as opposed to bad YAML).
        let message = inner.to_string();
        let structural = ["invalid type", "invalid value", "invalid length", "unknown field", "unknown variant", "missing field"]
            .iter()
            .any(|m| message.contains(m));
        let (status, code) = if structural { (StatusCode::UNPROCESSABLE_ENTITY, "invalid") } else { (StatusCode::BAD_REQUEST, "malformed_yaml") };
        ApiError::new(status, code, format!("{field}: {inner}")).field(field)
    })
}
