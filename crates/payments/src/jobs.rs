//! The payments module's durable work. A booking's money moves after the
//! transition that causes it commits (a gateway call never runs inside a
//! transaction), through `payments.booking_money`, enqueued in that very
//! transaction: it exists if and only if the transition happened, and it is
//! retried with back-off while the gateway is down. Every task is
//! idempotent (see `escrow`), so a retry after a crash does nothing twice.
//!
//! Daily: `payments.payouts` (owners' earnings to their banks) and
//! `payments.reconcile` (the books checked).

use std::sync::{Arc, OnceLock, Weak};

use rentify_platform::jobs::{Job, To, Workers};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use underway::task::RetryPolicy;
use uuid::Uuid;

use crate::{Inner, Payments};

/// What to do with a booking's money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum MoneyTask {
    /// The authorization call got no answer (gateway down): ask again, with
    /// the same idempotency key, until an answer or the payment timer.
    Authorize { booking_id: Uuid },
    /// The booking started: capture its authorization.
    Capture { booking_id: Uuid },
    /// The booking ended without a charge (declined, expired, payment
    /// timeout, fully refunded cancellation): release the hold.
    Void { booking_id: Uuid },
    /// A cancellation with a fee: capture the part kept, void the rest,
    /// settle the fee.
    CancellationFee { booking_id: Uuid },
    /// The booking completed: release the deposit, settle the escrow.
    Settle { booking_id: Uuid },
    /// A dispute was resolved: `refund` to the renter's card, the deposit
    /// (`deposit_capture`) to the owner for damage, then settle.
    Resolve {
        booking_id: Uuid,
        refund: i64,
        deposit_capture: i64,
    },
}

/// Input of the daily jobs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Daily {}

/// The handle jobs run with: the module, once built (a weak reference, so
/// the module and its jobs do not keep each other alive).
#[derive(Clone, Default)]
pub struct JobState(Arc<OnceLock<Weak<Inner>>>);

impl JobState {
    pub(crate) fn set(&self, inner: &Arc<Inner>) {
        let _ = self.0.set(Arc::downgrade(inner));
    }

    fn payments(&self) -> Result<Payments, underway::task::Error> {
        self.0
            .get()
            .and_then(Weak::upgrade)
            .map(|inner| Payments { inner })
            .ok_or_else(|| underway::task::Error::Retryable("the payments module is gone".into()))
    }
}

#[derive(Clone)]
pub struct PaymentJobs {
    pub booking_money: Arc<Job<MoneyTask, JobState>>,
    pub payouts: Arc<Job<Daily, JobState>>,
    pub reconcile: Arc<Job<Daily, JobState>>,
    pub(crate) state: JobState,
}

fn retryable(error: impl std::fmt::Display) -> underway::task::Error {
    underway::task::Error::Retryable(error.to_string())
}

/// Gateway outages last minutes: retry for about an hour.
fn patient() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(40)
        .initial_interval_ms(500)
        .max_interval_ms(120_000)
        .build()
}

impl PaymentJobs {
    pub async fn build(pool: PgPool) -> anyhow::Result<Self> {
        let state = JobState::default();
        let booking_money = Job::builder()
            .state(state.clone())
            .step(|cx, task: MoneyTask| async move {
                let payments = cx.state.payments()?;
                crate::escrow::run(&payments, &task)
                    .await
                    .map_err(retryable)?;
                To::done()
            })
            .retry_policy(patient())
            .name("payments.booking_money")
            .pool(pool.clone())
            .build()
            .await?;
        let payouts = Job::builder()
            .state(state.clone())
            .step(|cx, _: Daily| async move {
                let payments = cx.state.payments()?;
                let sent = crate::payouts::run_daily(&payments)
                    .await
                    .map_err(retryable)?;
                tracing::info!(sent, "daily payouts sent");
                To::done()
            })
            .retry_policy(patient())
            .name("payments.payouts")
            .pool(pool.clone())
            .build()
            .await?;
        let reconcile = Job::builder()
            .state(state.clone())
            .step(|cx, _: Daily| async move {
                let payments = cx.state.payments()?;
                let day = chrono::Utc::now().date_naive() - chrono::Days::new(1);
                let report = crate::reconcile::run(&payments, day)
                    .await
                    .map_err(retryable)?;
                tracing::info!(%day, clean = report.clean, "ledger reconciled");
                To::done()
            })
            .retry_policy(patient())
            .name("payments.reconcile")
            .pool(pool)
            .build()
            .await?;
        payouts
            .schedule(&"0 0 6 * * *[UTC]".parse()?, &Daily {})
            .await?;
        reconcile
            .schedule(&"0 30 2 * * *[UTC]".parse()?, &Daily {})
            .await?;
        Ok(Self {
            booking_money: Arc::new(booking_money),
            payouts: Arc::new(payouts),
            reconcile: Arc::new(reconcile),
            state,
        })
    }

    /// Enqueues `task` in the caller's transaction.
    pub async fn enqueue(&self, conn: &mut PgConnection, task: &MoneyTask) -> anyhow::Result<()> {
        self.booking_money
            .enqueue_using(&mut *conn, task)
            .await
            .map_err(|e| anyhow::anyhow!("enqueue {task:?}: {e}"))?;
        Ok(())
    }

    pub fn spawn(&self, workers: &mut Workers) {
        workers.spawn(&self.booking_money);
        workers.spawn(&self.payouts);
        workers.spawn(&self.reconcile);
    }
}
