//! The booking timers. The same job also enforces the payment deadline:
//! a booking still `pending_payment` at `payment_expires_at` is cancelled
//! (`payment_timeout`, see `crate::payment`).
//!
//! The approval timer: a request the owner does not answer within
//! `BOOKING_APPROVAL_WINDOW_SECS` is declined (`approval_timeout`) and its
//! unit released. The deadline is durable state (`approval_expires_at`),
//! enforced three ways:
//!
//! - `bookings.approval_timeout`, enqueued delayed to the deadline when the
//!   request is created (right after the placement commits; for extensions,
//!   in their transaction), declines it on time;
//! - `bookings.expire_requests`, every minute, declines any overdue request
//!   left (e.g. a process died between the commit and the enqueue);
//! - a booking attempt that conflicts only with overdue requests declines
//!   them on the spot, so a late worker never blocks a slot.
//!
//! All three are idempotent: an answered request is left alone.

use std::sync::Arc;

use chrono::Utc;
use rentify_payments::PaymentJobs;
use rentify_platform::jobs::{Job, To, Workers};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// Input of `bookings.approval_timeout`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApprovalTimeout {
    pub booking_id: Uuid,
}

/// Input of the `bookings.expire_requests` sweep (none needed).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExpireRequests {}

/// The bookings module's jobs; built by `Bookings::init` (to enqueue) and by
/// the worker (to run them).
#[derive(Clone)]
pub struct BookingJobs {
    pub approval_timeout: Arc<Job<ApprovalTimeout, PaymentJobs>>,
    pub expire_requests: Arc<Job<ExpireRequests, PaymentJobs>>,
}

fn retryable(error: impl std::fmt::Display) -> underway::task::Error {
    underway::task::Error::Retryable(error.to_string())
}

impl BookingJobs {
    /// `money`: the payments jobs, to release the money of what expires.
    pub async fn build(pool: PgPool, money: PaymentJobs) -> anyhow::Result<Self> {
        let approval_timeout = Job::builder()
            .state(money.clone())
            // Step 1: wait until the deadline (the task is normally enqueued
            // delayed to it already; this only guards against an early run).
            .step(|mut cx, input: ApprovalTimeout| async move {
                let deadline: Option<chrono::DateTime<Utc>> = sqlx::query_scalar(
                    "SELECT CASE status WHEN 'requested' THEN approval_expires_at
                                        ELSE payment_expires_at END
                       FROM bookings WHERE id = $1 AND status IN ('requested', 'pending_payment')",
                )
                .bind(input.booking_id)
                .fetch_optional(&mut *cx.tx)
                .await?
                .flatten();
                cx.tx.commit().await?;
                let remaining = deadline
                    .map(|d| (d - Utc::now()).num_milliseconds())
                    .unwrap_or(0);
                if remaining > 0 {
                    To::delay_for(input, jiff::Span::new().milliseconds(remaining + 50))
                } else {
                    To::next(input)
                }
            })
            // Step 2: decline it if still unanswered.
            .step(|mut cx, input: ApprovalTimeout| async move {
                let expired =
                    crate::service::expire_booking(&mut cx.tx, &cx.state, input.booking_id)
                        .await
                        .map_err(retryable)?;
                cx.tx.commit().await?;
                if expired {
                    tracing::info!(booking.id = %input.booking_id, "booking request expired");
                }
                To::done()
            })
            .name("bookings.approval_timeout")
            .pool(pool.clone())
            .build()
            .await?;
        let expire_requests = Job::builder()
            .state(money)
            .step(|mut cx, _: ExpireRequests| async move {
                let expired = crate::service::expire_overdue(&mut cx.tx, &cx.state)
                    .await
                    .map_err(retryable)?;
                cx.tx.commit().await?;
                if expired > 0 {
                    tracing::info!(expired, "overdue booking requests declined by the sweep");
                }
                To::done()
            })
            .name("bookings.expire_requests")
            .pool(pool)
            .build()
            .await?;
        let every_minute = "0 * * * * *[UTC]".parse()?;
        expire_requests
            .schedule(&every_minute, &ExpireRequests {})
            .await?;
        Ok(Self {
            approval_timeout: Arc::new(approval_timeout),
            expire_requests: Arc::new(expire_requests),
        })
    }

    pub fn spawn(&self, workers: &mut Workers) {
        workers.spawn(&self.approval_timeout);
        workers.spawn(&self.expire_requests);
    }
}
