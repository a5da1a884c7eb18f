use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::Group;
use crate::{
    error::{ApiError, codes},
    state::PlatformState,
};

/// Who the limit applies to, set by the authentication layer when the caller
/// is known (`user:<id>`, `key:<id>`); otherwise the client IP is used.
#[derive(Clone, Debug)]
pub struct RateLimitSubject(pub String);

/// Middleware: decides, answers 429 in the envelope when denied, and adds the
/// `RateLimit-*` headers either way. If the store fails (Redis down) the
/// request is let through and the failure logged: availability first.
pub async fn rate_limit(
    State(state): State<PlatformState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = state.limiter.as_ref() else {
        return next.run(request).await;
    };
    let Some(group) = Group::of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let client = match request.extensions().get::<RateLimitSubject>() {
        Some(subject) => subject.0.clone(),
        None => format!(
            "ip:{}",
            client_ip(&request, state.config.trust_proxy_headers)
        ),
    };
    let decision = match limiter.check(group, &client).await {
        Ok(decision) => decision,
        Err(error) => {
            tracing::warn!(error = %error, "rate limit store unavailable; allowing the request");
            return next.run(request).await;
        }
    };
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        metrics::counter!("rate_limited_total", "group" => group.name(), "blocked" => decision.blocked.to_string())
            .increment(1);
        let retry = decision.retry_after.unwrap_or_default();
        let message = if decision.blocked {
            "too many requests after being limited; this client is blocked for a while"
        } else {
            "too many requests; slow down"
        };
        ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            message,
        )
        .with_detail(serde_json::json!({"group": group.name(), "blocked": decision.blocked}))
        .with_retry_after(ceil_secs(retry))
        .into_response()
    };
    set_headers(response.headers_mut(), &decision);
    response
}

fn set_headers(headers: &mut HeaderMap, decision: &super::Decision) {
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert(
        "ratelimit-reset",
        HeaderValue::from(ceil_secs(decision.reset_after)),
    );
}

fn ceil_secs(duration: std::time::Duration) -> u64 {
    duration.as_millis().div_ceil(1000) as u64
}

/// The caller's IP: the socket peer, or the left-most `X-Forwarded-For`
/// entry when the deployment says a trusted proxy sets it.
pub fn client_ip(request: &Request, trust_proxy_headers: bool) -> String {
    ip_from(request.headers(), request.extensions(), trust_proxy_headers)
}

fn ip_from(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    trust_proxy_headers: bool,
) -> String {
    if trust_proxy_headers
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return ip.to_string();
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Extractor of the caller's IP, by the same rule as the rate limiter.
#[derive(Clone, Debug)]
pub struct ClientIp(pub String);

impl axum::extract::FromRequestParts<PlatformState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &PlatformState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(ip_from(
            &parts.headers,
            &parts.extensions,
            state.config.trust_proxy_headers,
        )))
    }
}
