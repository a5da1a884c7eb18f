//! The cross-cutting HTTP stack every route runs behind, assembled in one
//! place so its order is visible:
//!
//! request id (unacceptable client ids replaced) → trace span → metrics → envelope guarantee → panic catcher →
//! timeout → body limit → CORS → security headers → authentication → rate limit → handler.

pub mod envelope;
pub mod etag;
pub mod metrics;
pub mod request_id;
pub mod security;

use axum::{Router, extract::DefaultBodyLimit, http::StatusCode, middleware};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    limit::RequestBodyLimitLayer,
    request_id::{PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{auth, ratelimit, state::PlatformState};

/// Largest request body accepted anywhere (413 `payload_too_large` above).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Wraps `router` (every route and the fallback) in the platform's layers.
///
/// Each `Router::layer` call boxes the routes once more, and a boxed route
/// is cloned (an allocation) for every request; so the layers are composed
/// with one `ServiceBuilder` per group and applied in as few calls as the
/// order allows. In a `ServiceBuilder` the first layer is the outermost.
pub fn apply(router: Router<PlatformState>, state: &PlatformState) -> Router<PlatformState> {
    let config = &state.config;
    let router = router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(
                state.clone(),
                auth::authenticate,
            ))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                ratelimit::rate_limit,
            )),
    );
    security::headers(router).layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn(request_id::drop_unacceptable))
            .layer(SetRequestIdLayer::x_request_id(request_id::MakeRequestIdV7))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_id::make_span)
                    .on_request(())
                    .on_response(request_id::on_response)
                    .on_failure(()),
            )
            .layer(middleware::from_fn(metrics::track))
            .layer(middleware::from_fn(envelope::ensure_envelope))
            .layer(CatchPanicLayer::custom(envelope::panic_response))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::GATEWAY_TIMEOUT,
                config.request_timeout(),
            ))
            // Every extractor keeps `MAX_BODY_BYTES` (below); only a route
            // that reads its body itself with its own limit (media uploads,
            // up to `MEDIA_MAX_UPLOAD_BYTES`) may receive more.
            .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES.max(
                usize::try_from(config.media_max_upload_bytes).unwrap_or(usize::MAX),
            )))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(security::cors(&config.cors_allowed_origins)),
    )
}
