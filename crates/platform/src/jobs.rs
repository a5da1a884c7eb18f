//! Durable jobs and timers on PostgreSQL, through the `underway` crate
//! (ADR 0002): a job is enqueued with `enqueue_using(&mut *tx, ..)` in the
//! same transaction as the change that causes it, so it exists if and only
//! if that change committed; workers take tasks with `FOR UPDATE SKIP
//! LOCKED`, retry with back-off, and survive restarts. This module adds the
//! supervision (concurrency, shutdown) and the platform's own jobs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
pub use underway::{Job, To};

/// Runs the workers and schedulers of a set of jobs until shutdown.
pub struct Workers {
    token: CancellationToken,
    tasks: JoinSet<()>,
    concurrency: usize,
    poll_interval: Duration,
}

impl Workers {
    /// `poll_interval` bounds how late a delayed task or a retry starts:
    /// new tasks wake workers at once (LISTEN/NOTIFY), but a task that
    /// becomes due later is only seen on the next poll.
    pub fn new(concurrency: usize, poll_interval: Duration) -> Self {
        Self {
            token: CancellationToken::new(),
            tasks: JoinSet::new(),
            concurrency,
            poll_interval,
        }
    }

    /// Starts `job`'s worker (up to `concurrency` tasks at once) and its
    /// cron scheduler.
    pub fn spawn<I, S>(&mut self, job: &Job<I, S>)
    where
        I: Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static,
        S: Clone + Send + Sync + 'static,
    {
        let mut worker = job.worker();
        worker.set_concurrency_limit(self.concurrency);
        worker.set_shutdown_token(self.token.clone());
        let mut scheduler = job.scheduler();
        scheduler.set_shutdown_token(self.token.clone());
        let every = jiff::Span::new().milliseconds(self.poll_interval.as_millis().max(10) as i64);
        self.tasks.spawn(async move {
            if let Err(error) = worker.run_every(every).await {
                tracing::error!(error = %error, "job worker stopped");
            }
        });
        self.tasks.spawn(async move {
            if let Err(error) = scheduler.run().await {
                tracing::error!(error = %error, "job scheduler stopped");
            }
        });
    }

    /// Stops taking new tasks and waits up to `grace` for running ones.
    pub async fn shutdown(mut self, grace: Duration) {
        self.token.cancel();
        drain(&mut self.tasks, grace, "job workers").await;
    }
}

/// Waits up to `grace` for `tasks` (already told to stop) to finish, then
/// aborts the rest: a graceful stop that cannot hang.
pub async fn drain(tasks: &mut JoinSet<()>, grace: Duration, what: &str) {
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "{what} did not stop in time; aborting them"
        );
        tasks.abort_all();
    }
}

/// Input of the hourly idempotency-key purge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PurgeIdempotencyKeys {
    pub ttl_hours: u32,
}

/// The platform's own periodic jobs.
pub struct PlatformJobs {
    pub purge_idempotency_keys: Job<PurgeIdempotencyKeys, ()>,
}

impl PlatformJobs {
    /// Builds the jobs and (re)installs their schedules.
    pub async fn build(pool: PgPool, idempotency_ttl_hours: u32) -> anyhow::Result<Self> {
        let purge_idempotency_keys = Job::builder()
            .step(|mut cx, input: PurgeIdempotencyKeys| async move {
                let purged = crate::idempotency::purge_expired(&mut cx.tx, input.ttl_hours).await?;
                cx.tx.commit().await?;
                tracing::info!(purged, "purged expired idempotency keys");
                To::done()
            })
            .name("platform.purge_idempotency_keys")
            .pool(pool)
            .build()
            .await?;
        let hourly = "0 0 * * * *[UTC]".parse()?;
        purge_idempotency_keys
            .schedule(
                &hourly,
                &PurgeIdempotencyKeys {
                    ttl_hours: idempotency_ttl_hours,
                },
            )
            .await?;
        Ok(Self {
            purge_idempotency_keys,
        })
    }

    pub fn spawn(&self, workers: &mut Workers) {
        workers.spawn(&self.purge_idempotency_keys);
    }
}
