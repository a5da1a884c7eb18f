//! `X-Request-Id`: accepted when the client sends a sane one, generated
//! (UUIDv7) otherwise, echoed on the response and carried by the request's
//! span, so it appears in every log line of that request.

use std::time::Duration;

use axum::{
    extract::MatchedPath,
    http::{Request, Response},
    middleware::Next,
};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Span;

#[derive(Clone, Copy, Debug, Default)]
pub struct MakeRequestIdV7;

impl MakeRequestId for MakeRequestIdV7 {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().to_string();
        id.parse().ok().map(RequestId::new)
    }
}

const HEADER: &str = "x-request-id";

fn is_acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Runs before the id is assigned: a client id that is not 1–128 visible
/// ASCII characters is dropped, so one is generated instead of logging or
/// echoing something unusable.
pub async fn drop_unacceptable(
    mut request: axum::extract::Request,
    next: Next,
) -> axum::response::Response {
    let acceptable = request
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().is_ok_and(is_acceptable));
    if acceptable == Some(false) {
        request.headers_mut().remove(HEADER);
    }
    next.run(request).await
}

/// The id of a request (the client's, or the one generated for it).
pub fn request_id_of<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The span every log line of a request belongs to. `user.id` is recorded
/// later by the authentication extractor.
pub fn make_span<B>(request: &Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = %request_id_of(request),
        http.method = %request.method(),
        http.route = %route,
        http.path = %request.uri().path(),
        user.id = tracing::field::Empty,
    )
}

/// One line per request. Server errors are logged (once, with their cause)
/// where they become a response, in `error.rs`, so this stays at `info`.
pub fn on_response<B>(response: &Response<B>, latency: Duration, _span: &Span) {
    let latency_ms = latency.as_secs_f64() * 1000.0;
    tracing::info!(
        http.status = response.status().as_u16(),
        latency_ms,
        "request finished"
    );
}
