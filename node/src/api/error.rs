//! API errors: every failure is a JSON body `{"error": {"code", "message", "field"?, "line"?}}` with a
//! 4xx status for the caller's mistakes and 503/504 (with Retry-After) for cluster conditions.

use crate::raft::proposer::ProposeError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::Rejection;
use serde::Serialize;

/// One error answer. Boxed: handlers return `Result<_, ApiError>` everywhere, and the error
/// should not make every such result as large as its seven fields.
#[derive(Debug)]
pub struct ApiError(Box<Details>);

#[derive(Debug)]
struct Details {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// Line of the submitted YAML file the error points at.
    line: Option<usize>,
    retry_after_s: Option<u64>,
    /// Sent as the `Location` header (redirects to the leader).
    location: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError(Box::new(Details {
            status,
            code,
            message: message.into(),
            field: None,
            line: None,
            retry_after_s: None,
            location: None,
        }))
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.0.field = Some(field.into());
        self
    }

    /// Points the error at a line of the submitted file (also appended to the message).
    pub fn line(mut self, line: usize) -> Self {
        self.0.message = format!("{} (line {line})", self.0.message);
        self.0.line = Some(line);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.0.retry_after_s = Some(seconds);
        self
    }

    /// Sends `url` as the `Location` header (a redirect to the leader).
    pub fn location(mut self, url: impl Into<String>) -> Self {
        self.0.location = Some(url.into());
        self
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The field the error names, if any.
    pub fn field_name(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).field(field)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = Body {
            error: Inner {
                code: e.code,
                message: &e.message,
                field: e.field.as_deref(),
                line: e.line,
            },
        };
        let mut resp = (e.status, axum::Json(body)).into_response();
        if let Some(s) = e.retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(loc) = e.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
            resp.headers_mut().insert(header::LOCATION, loc);
        }
        if e.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"flotilla\""),
            );
        }
        resp
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        match r {
            Rejection::Invalid(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()).field(e.field())
            }
            Rejection::AlreadyBootstrapped => ApiError::new(StatusCode::CONFLICT, "already_bootstrapped", message),
            Rejection::TooManyTokens { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_tokens", message),
            Rejection::TooManyJoinTokens { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_join_tokens", message),
            Rejection::TooManyTenants { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_tenants", message),
            Rejection::TooManySecrets { .. }
            | Rejection::SecretsTooLarge { .. }
            | Rejection::TooManyDataKeys { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_secrets", message),
            Rejection::TooManyRepositories { .. } => {
                ApiError::new(StatusCode::CONFLICT, "too_many_repositories", message)
            }
            Rejection::SecretInUse { .. } => ApiError::new(StatusCode::CONFLICT, "secret_in_use", message),
            Rejection::JoinTokenRefused(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "join_token_refused", message).field("Authorization")
            }
            Rejection::UnknownPipeline(_)
            | Rejection::UnknownJob(_)
            | Rejection::UnknownPool(_)
            | Rejection::UnknownToken(_)
            | Rejection::UnknownSecret { .. }
            | Rejection::UnknownRepository { .. }
            | Rejection::UnknownSchedule { .. }
            | Rejection::UnknownNotifier { .. }
            | Rejection::UnknownCache { .. } => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            Rejection::ApprovalRole { .. } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            Rejection::StaleSchedule { .. } => ApiError::new(StatusCode::CONFLICT, "stale_schedule", message),
            Rejection::TooManyNotifiers { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_notifiers", message),
            Rejection::TooManySchedules { .. } => ApiError::new(StatusCode::CONFLICT, "too_many_schedules", message),
            Rejection::IdempotencyKeyReused { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message)
                    .field("Idempotency-Key")
            }
            _ => ApiError::new(StatusCode::CONFLICT, "conflict", message),
        }
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::Timeout(_) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string()),
            ProposeError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()).field("body")
            }
            _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()).retry_after(1),
        }
    }
}
