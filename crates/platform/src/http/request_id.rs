//! `X-Request-Id`: accepted when the client sends a sane one, generated
//! (UUIDv7) otherwise, echoed on the response and carried by the request's
//! span, so it appears in every log line of that request.

use std::time::Duration;

use axum::{
    extract::MatchedPath,
    http::{Request, Response},
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

/// The id of a request: the client's when it is 1–128 visible ASCII
/// characters, else the one generated for it.
pub fn request_id_of<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_default()
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

pub fn on_response<B>(response: &Response<B>, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(http.status = status, latency_ms, "request finished");
    } else {
        tracing::info!(http.status = status, latency_ms, "request finished");
    }
}
