//! `/health/live` and `/health/ready` for orchestrators and load balancers.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{error::ApiError, state::PlatformState};

/// Health report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Per dependency: `ok`, or absent when not configured.
    #[schema(value_type = Object)]
    pub checks: serde_json::Map<String, serde_json::Value>,
}

/// The process is up and serving (no dependency is checked).
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "The process is up", body = Health)))]
pub async fn live() -> impl IntoResponse {
    Json(Health {
        status: "ok",
        checks: Default::default(),
    })
}

/// PostgreSQL (and Redis, when configured) answer within 2 s.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Every configured dependency answered", body = Health),
        (status = 503, description = "`dependency_unavailable`, naming each failing dependency in `details`, or `draining` during shutdown", body = crate::error::ErrorEnvelope)
    )
)]
pub async fn ready(State(state): State<PlatformState>) -> Result<Json<Health>, ApiError> {
    const LIMIT: Duration = Duration::from_secs(2);
    if state.is_draining() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "shutting down; send traffic elsewhere",
        )
        .with_retry_after(5));
    }
    let mut checks = serde_json::Map::new();
    let mut failures = Vec::new();

    let postgres = tokio::time::timeout(LIMIT, sqlx::query("SELECT 1").execute(&state.db)).await;
    match postgres {
        Ok(Ok(_)) => {
            checks.insert("postgres".into(), "ok".into());
        }
        Ok(Err(e)) => failures.push(("postgres", e.to_string())),
        Err(_) => failures.push(("postgres", "timed out after 2 s".into())),
    }
    if let Some(redis) = &state.redis {
        let mut conn = redis.clone();
        let ping =
            tokio::time::timeout(LIMIT, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        match ping {
            Ok(Ok(_)) => {
                checks.insert("redis".into(), "ok".into());
            }
            Ok(Err(e)) => failures.push(("redis", e.to_string())),
            Err(_) => failures.push(("redis", "timed out after 2 s".into())),
        }
    }

    if failures.is_empty() {
        return Ok(Json(Health {
            status: "ok",
            checks,
        }));
    }
    let names: Vec<&str> = failures.iter().map(|(name, _)| *name).collect();
    let details = failures
        .iter()
        .map(|(name, error)| serde_json::json!({"dependency": name, "error": error}))
        .collect();
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
        format!("not ready: {} unavailable", names.join(", ")),
    )
    .with_details(details)
    .with_retry_after(5))
}
