//! Security headers and CORS.

use axum::{
    Router,
    http::{HeaderName, HeaderValue, Method, header},
};
use tower::ServiceBuilder;
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    set_header::SetResponseHeaderLayer,
};

/// Headers every response gets, whatever a handler set.
const ALWAYS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
];

/// The API's policy; a route that serves HTML (`/docs`) sets its own, which
/// is then kept.
const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds conservative security headers for a JSON API to every response of
/// `router`.
pub fn headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let always = |i: usize| {
        let (name, value) = ALWAYS[i].clone();
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    // One `layer` call (each call boxes the routes again).
    router.layer(
        ServiceBuilder::new()
            .layer(always(0))
            .layer(always(1))
            .layer(always(2))
            .layer(always(3))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DEFAULT_CSP),
            )),
    )
}

/// CORS from `CORS_ALLOWED_ORIGINS`: none by default, `*` for any origin
/// (without credentials), or an explicit list.
pub fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse::<HeaderValue>().ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("idempotent-replayed"),
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}
