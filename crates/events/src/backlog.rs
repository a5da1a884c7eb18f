//! Backpressure: how many events the slowest consumer still has to handle,
//! measured every second, and the middleware that answers non-critical
//! writes with 503 `overloaded` while that backlog is above
//! `EVENTS_BACKLOG_LIMIT`. Critical flows (sign-in, bookings, payments,
//! webhooks) are not behind the middleware and keep working: shedding the
//! optional writes is what lets the consumers catch up.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::Request,
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
};
use rentify_platform::ApiError;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Seconds a shed client is asked to wait.
pub const RETRY_AFTER_SECS: u64 = 5;

/// The shared backlog gauge; cheap to clone.
#[derive(Clone, Debug)]
pub struct Backlog {
    depth: Arc<AtomicU64>,
    limit: u64,
}

impl Backlog {
    pub fn new(limit: u64) -> Self {
        Self {
            depth: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    /// The last measured depth (capped just above the limit).
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn overloaded(&self) -> bool {
        self.depth() > self.limit
    }

    /// Sets the depth (the monitor does; tests may).
    pub fn set(&self, depth: u64) {
        self.depth.store(depth, Ordering::Relaxed);
        metrics::gauge!("events_backlog").set(depth as f64);
    }

    /// Measures the deepest backlog among the cursors named `cursors`
    /// (this deployment's consumers, or the NATS relay), counting at most
    /// `limit + 1` events each so that a deep backlog stays cheap to
    /// measure.
    pub async fn measure(&self, pool: &PgPool, cursors: &[String]) -> sqlx::Result<u64> {
        let depth: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(behind), 0)::bigint FROM event_cursors c
             CROSS JOIN LATERAL (
                 SELECT count(*) AS behind FROM (
                     SELECT 1 FROM events e
                     WHERE (e.tx_id, e.position) > (c.tx_id, c.position)
                     LIMIT $2) pending) counted
             WHERE c.name = ANY($1)",
        )
        .bind(cursors)
        .bind((self.limit + 1) as i64)
        .fetch_one(pool)
        .await?;
        let depth = depth.max(0) as u64;
        self.set(depth);
        Ok(depth)
    }

    /// Re-measures every `every` until `token` is cancelled.
    pub fn spawn_monitor(
        &self,
        pool: PgPool,
        cursors: Vec<String>,
        every: Duration,
        token: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let backlog = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = backlog.measure(&pool, &cursors).await {
                    tracing::warn!(error = %error, "cannot measure the event backlog");
                }
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }
}

/// Middleware for non-critical routes: while the backlog is over its limit,
/// writes get 503 `overloaded` with `Retry-After`; reads pass. Finds the
/// [`Backlog`] in the request's extensions (no backlog, no shedding).
pub async fn shed_when_overloaded(request: Request, next: Next) -> Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if write
        && let Some(backlog) = request.extensions().get::<Backlog>()
        && backlog.overloaded()
    {
        metrics::counter!("http_shed_total").increment(1);
        return ApiError::unavailable(
            "overloaded",
            "the service is catching up on its work; retry shortly",
        )
        .with_retry_after(RETRY_AFTER_SECS)
        .into_response();
    }
    next.run(request).await
}
