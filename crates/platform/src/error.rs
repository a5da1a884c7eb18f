//! The one error envelope every response uses:
//! `{"error": {"code": "...", "message": "...", "details": [...]}}`.
//!
//! Modules keep their own error enums and convert into [`ApiError`] in one
//! `From` impl each; this file is the only place an error becomes HTTP.
//! Server errors are logged here, once, with their cause, and the client only
//! ever sees `internal_error`.

use std::borrow::Cow;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// Stable error codes shared by the platform. Modules add their own
/// (`booking_conflict`, …) next to their error types; docs/API-DESIGN.md lists
/// them all.
pub mod codes {
    pub const INVALID_JSON: &str = "invalid_json";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    pub const VALIDATION_FAILED: &str = "validation_failed";
    pub const INVALID_CURSOR: &str = "invalid_cursor";
    pub const INVALID_PARAMETER: &str = "invalid_parameter";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const INVALID_TOKEN: &str = "invalid_token";
    pub const FORBIDDEN: &str = "forbidden";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const CONFLICT: &str = "conflict";
    pub const PRECONDITION_FAILED: &str = "precondition_failed";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "idempotency_key_reused";
    pub const IDEMPOTENCY_KEY_IN_PROGRESS: &str = "idempotency_key_in_progress";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const INTERNAL_ERROR: &str = "internal_error";
    pub const SERVICE_UNAVAILABLE: &str = "service_unavailable";
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
}

/// The response body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorObject,
}

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable, documented, machine-readable code such as `validation_failed`.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// Human-readable explanation; may change wording between releases.
    pub message: String,
    /// Structured specifics: one entry per invalid field for
    /// `validation_failed`, the current state for `invalid_transition`, …
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<serde_json::Value>,
}

/// One invalid field of a `validation_failed` error.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `pricing.daily`.
    pub field: String,
    /// Stable code of the rule, e.g. `required`, `length`, `range`.
    pub code: String,
    pub message: String,
}

/// An error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    details: Vec<serde_json::Value>,
    retry_after_secs: Option<u64>,
    /// The underlying cause of a server error; logged, never sent.
    source: Option<anyhow::Error>,
}

/// Handlers' result type.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// Any status and code; prefer the named constructors below.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            details: Vec::new(),
            retry_after_secs: None,
            source: None,
        }
    }

    pub fn bad_request(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn validation(fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [one] => format!("`{}` is invalid: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        let details = fields
            .into_iter()
            .map(|f| serde_json::to_value(f).unwrap_or_default())
            .collect();
        Self::bad_request(codes::VALIDATION_FAILED, message).with_details(details)
    }

    /// A single invalid field.
    pub fn invalid_field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }])
    }

    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    /// Also used for resources the caller may not see, so existence never leaks.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such resource")
    }

    pub fn conflict(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unavailable(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// A failure of ours. The cause is logged with the request id; the
    /// client gets a generic message.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL_ERROR,
            "an internal error occurred; it has been logged",
        );
        error.source = Some(source.into());
        error
    }

    pub fn with_details(mut self, details: Vec<serde_json::Value>) -> Self {
        self.details = details;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.details.push(detail);
        self
    }

    /// Adds `Retry-After` to the response (429 and 503).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response body this error renders as (`{"error": {...}}`), for
    /// answers stored and replayed later (idempotency).
    pub fn envelope_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(error.code = %self.code, error.cause = ?source, "request failed")
                }
                None => {
                    tracing::error!(error.code = %self.code, error.message = %self.message, "request failed")
                }
            }
        }
        let envelope = ErrorEnvelope {
            error: ErrorObject {
                code: self.code.into_owned(),
                message: self.message.into_owned(),
                details: self.details,
            },
        };
        let mut response = (self.status, Json(envelope)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut => Self::unavailable(
                codes::SERVICE_UNAVAILABLE,
                "the database is saturated; retry shortly",
            )
            .with_retry_after(1),
            // A connection lost under us (database restart, failover): the
            // pool drops it and a retry gets a fresh one.
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(%error, "database connection lost");
                Self::unavailable(
                    codes::SERVICE_UNAVAILABLE,
                    "the database connection was lost; retry shortly",
                )
                .with_retry_after(1)
            }
            _ => Self::internal(error),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(error)
    }
}

/// The default envelope for a status that reached the client without one
/// (axum's own 405, tower-http's 413 or a timeout). See
/// [`crate::http::envelope`].
pub fn envelope_for_status(status: StatusCode) -> ApiError {
    let (code, message): (&'static str, &'static str) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be understood"),
        StatusCode::UNAUTHORIZED => (codes::UNAUTHENTICATED, "authentication is required"),
        StatusCode::FORBIDDEN => (codes::FORBIDDEN, "this action is not allowed"),
        StatusCode::NOT_FOUND => (codes::NOT_FOUND, "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => (
            codes::METHOD_NOT_ALLOWED,
            "this method is not allowed on this resource",
        ),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => (
            codes::REQUEST_TIMEOUT,
            "the request took too long and was abandoned",
        ),
        StatusCode::PRECONDITION_FAILED => (
            codes::PRECONDITION_FAILED,
            "the resource changed since it was read",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            codes::PAYLOAD_TOO_LARGE,
            "the request body is larger than 1 MiB",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            codes::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON with `Content-Type: application/json`",
        ),
        StatusCode::TOO_MANY_REQUESTS => (codes::RATE_LIMITED, "too many requests"),
        StatusCode::SERVICE_UNAVAILABLE => (
            codes::SERVICE_UNAVAILABLE,
            "the service is temporarily unavailable",
        ),
        s if s.is_server_error() => (
            codes::INTERNAL_ERROR,
            "an internal error occurred; it has been logged",
        ),
        _ => ("error", "the request failed"),
    };
    ApiError::new(status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let (status, body) = body_of(ApiError::internal(anyhow::anyhow!(
            "password=hunter2 at db.internal"
        )))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn validation_lists_each_field() {
        let (status, body) = body_of(ApiError::validation(vec![
            FieldError {
                field: "email".into(),
                code: "email".into(),
                message: "not an email".into(),
            },
            FieldError {
                field: "password".into(),
                code: "length".into(),
                message: "too short".into(),
            },
        ]))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["details"].as_array().unwrap().len(), 2);
        assert_eq!(body["error"]["details"][1]["field"], "password");
    }
}
