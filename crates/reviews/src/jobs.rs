//! The review-window timer. `reviews.reveal` {booking_id} is enqueued in
//! the transaction of a booking's first review, delayed to the window's
//! close, so it exists exactly when a lone review needs unsealing. When it
//! runs, it reveals whatever is still sealed and due (and emits
//! `review.revealed`); if the other party reviewed in the meantime both are
//! already visible and it does nothing. Idempotent, as underway 0.2 needs:
//! a step's commit ends the worker's transaction, so a crash right after it
//! runs the step again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rentify_platform::jobs::{Job, To, Workers};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Input of `reviews.reveal`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reveal {
    pub booking_id: Uuid,
}

/// The reviews module's jobs; built by `Reviews::init` (to enqueue) and by
/// the worker (to run them).
#[derive(Clone)]
pub struct ReviewJobs {
    pub reveal: Arc<Job<Reveal, ()>>,
}

fn retryable(error: impl std::fmt::Display) -> underway::task::Error {
    underway::task::Error::Retryable(error.to_string())
}

/// Ten years: far beyond any window, well within what a span can hold.
const MAX_DELAY_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

fn span_until(at: DateTime<Utc>) -> jiff::Span {
    let ms = (at - Utc::now()).num_milliseconds().clamp(0, MAX_DELAY_MS);
    jiff::Span::new().milliseconds(ms)
}

impl ReviewJobs {
    /// How many jobs [`ReviewJobs::spawn`] starts (the worker sizes its
    /// pool by it).
    pub const COUNT: u32 = 1;

    pub async fn build(pool: PgPool) -> anyhow::Result<Self> {
        let reveal = Job::builder()
            // Step 1: wait until the window closes (normally enqueued
            // delayed to it already; this guards against an early run).
            .step(|mut cx, input: Reveal| async move {
                let due: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "SELECT min(window_closes_at) FROM reviews
                      WHERE booking_id = $1 AND visible_at IS NULL",
                )
                .bind(input.booking_id)
                .fetch_one(&mut *cx.tx)
                .await?;
                cx.tx.commit().await?;
                match due {
                    Some(at) if at > Utc::now() => {
                        // A little after, so the clock has passed it.
                        To::delay_for(input, span_until(at + chrono::Duration::milliseconds(50)))
                    }
                    _ => To::next(input),
                }
            })
            // Step 2: unseal what is due.
            .step(|mut cx, input: Reveal| async move {
                let revealed = crate::service::reveal_due(&mut cx.tx, input.booking_id)
                    .await
                    .map_err(retryable)?;
                cx.tx.commit().await?;
                if revealed > 0 {
                    tracing::info!(booking.id = %input.booking_id, revealed, "review window closed; lone reviews revealed");
                }
                To::done()
            })
            .name("reviews.reveal")
            .pool(pool)
            .build()
            .await?;
        Ok(Self {
            reveal: Arc::new(reveal),
        })
    }

    /// Enqueues the reveal of `booking_id`'s reviews at `at`, in the
    /// caller's transaction.
    pub async fn enqueue_reveal(
        &self,
        conn: &mut PgConnection,
        booking_id: Uuid,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.reveal
            .enqueue_after_using(&mut *conn, &Reveal { booking_id }, span_until(at))
            .await
            .map_err(|e| anyhow::anyhow!("enqueue the reveal of booking {booking_id}: {e}"))?;
        Ok(())
    }

    pub fn spawn(&self, workers: &mut Workers) {
        workers.spawn(&self.reveal);
    }
}
