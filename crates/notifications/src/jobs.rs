//! The module's durable jobs (underway), both enqueued in the transaction
//! that decides them:
//! - `notifications.deliver` {delivery_id}: one attempt at one delivery
//!   (the dispatcher enqueues the first, delayed to the end of quiet hours
//!   when need be; a failed attempt enqueues the next with back-off);
//! - `notifications.review_prompt`: asks both parties of a completed
//!   booking for a review, `NOTIFICATIONS_REVIEW_PROMPT_DELAY_SECS` later.
//!
//! Both are idempotent, and must be: in underway 0.2 the step's
//! `cx.tx.commit()` (which the step needs, or its writes roll back) ends the
//! worker's whole transaction, so a task's effects commit a moment before
//! the task is marked succeeded, and a crash in between runs it again.

use std::{
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use rentify_platform::jobs::{Job, To, Workers};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{Inner, Notifications};

/// Input of `notifications.deliver`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deliver {
    pub delivery_id: Uuid,
}

/// Input of `notifications.review_prompt`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReviewPrompt {
    /// The `booking.completed` event: with the user and the type, it makes
    /// the prompt happen once whatever runs twice.
    pub event_id: Uuid,
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub renter_id: Uuid,
    pub owner_id: Uuid,
}

/// The module the jobs run with, once built (a weak reference, so the
/// module and its jobs do not keep each other alive).
#[derive(Clone, Default)]
pub struct JobState(Arc<OnceLock<Weak<Inner>>>);

impl JobState {
    pub(crate) fn set(&self, inner: &Arc<Inner>) {
        let _ = self.0.set(Arc::downgrade(inner));
    }

    fn notifications(&self) -> Result<Notifications, underway::task::Error> {
        self.0
            .get()
            .and_then(Weak::upgrade)
            .map(|inner| Notifications { inner })
            .ok_or_else(|| {
                underway::task::Error::Retryable("the notifications module is gone".into())
            })
    }
}

fn retryable(error: impl std::fmt::Display) -> underway::task::Error {
    underway::task::Error::Retryable(error.to_string())
}

/// The notifications jobs, on one pool.
#[derive(Clone)]
pub struct Jobs {
    pub deliver: Arc<Job<Deliver, JobState>>,
    pub review_prompt: Arc<Job<ReviewPrompt, JobState>>,
    pub(crate) state: JobState,
}

impl Jobs {
    pub(crate) async fn build(pool: PgPool) -> anyhow::Result<Self> {
        let state = JobState::default();
        let deliver = Job::builder()
            .state(state.clone())
            .step(|mut cx, input: Deliver| async move {
                let notifications = cx.state.notifications()?;
                crate::delivery::attempt(&notifications, &mut cx.tx, input.delivery_id)
                    .await
                    .map_err(retryable)?;
                cx.tx.commit().await?;
                To::done()
            })
            .name("notifications.deliver")
            .pool(pool.clone())
            .build()
            .await?;
        let review_prompt = Job::builder()
            .state(state.clone())
            .step(|cx, input: ReviewPrompt| async move {
                let notifications = cx.state.notifications()?;
                crate::dispatch::review_prompt(&notifications, &input)
                    .await
                    .map_err(retryable)?;
                To::done()
            })
            .name("notifications.review_prompt")
            .pool(pool)
            .build()
            .await?;
        Ok(Self {
            deliver: Arc::new(deliver),
            review_prompt: Arc::new(review_prompt),
            state,
        })
    }

    /// Enqueues an attempt at `delivery_id` in the caller's transaction,
    /// `delay` from now.
    pub(crate) async fn enqueue_delivery(
        &self,
        conn: &mut PgConnection,
        delivery_id: Uuid,
        delay: Duration,
    ) -> anyhow::Result<()> {
        let input = Deliver { delivery_id };
        let enqueued = if delay.is_zero() {
            self.deliver.enqueue_using(&mut *conn, &input).await
        } else {
            self.deliver
                .enqueue_after_using(&mut *conn, &input, span(delay))
                .await
        };
        enqueued.map_err(|e| anyhow::anyhow!("enqueue delivery {delivery_id}: {e}"))?;
        Ok(())
    }

    /// Enqueues the review prompt in the caller's transaction, `delay` from now.
    pub(crate) async fn enqueue_review_prompt(
        &self,
        conn: &mut PgConnection,
        input: &ReviewPrompt,
        delay: Duration,
    ) -> anyhow::Result<()> {
        self.review_prompt
            .enqueue_after_using(&mut *conn, input, span(delay))
            .await
            .map_err(|e| anyhow::anyhow!("enqueue the review prompt: {e}"))?;
        Ok(())
    }

    pub(crate) fn spawn(&self, workers: &mut Workers) {
        workers.spawn(&self.deliver);
        workers.spawn(&self.review_prompt);
    }
}

/// Ten years: far beyond any delay here, well within what a span can hold.
const MAX_DELAY_MS: u128 = 10 * 365 * 24 * 3600 * 1000;

fn span(delay: Duration) -> jiff::Span {
    jiff::Span::new().milliseconds(delay.as_millis().min(MAX_DELAY_MS) as i64)
}
