//! Guarantees that no error leaves the service without the envelope:
//! axum's own 405, tower-http's 413 and 504, a panic, an unknown route.

use std::any::Any;

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::{ApiError, envelope_for_status};

/// The fallback of the whole router: 404 `not_found`.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        crate::error::codes::NOT_FOUND,
        "no route matches this path",
    )
}

/// Replaces an error response that is not JSON with the envelope for its
/// status, keeping headers such as `Allow` and `Retry-After`.
pub async fn ensure_envelope(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if status.as_u16() < 400 || is_json(&response) {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut replacement = envelope_for_status(status).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replacement
                .headers_mut()
                .insert(name.clone(), value.clone());
        }
    }
    replacement
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"))
}

/// A panicking handler becomes a logged 500 `internal_error`.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    let mut response =
        ApiError::internal(anyhow::anyhow!("handler panicked: {message}")).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
