//! One event to one consumer, in its own transaction: the path of a retry,
//! a replayed dead letter and a JetStream message. (The in-process stream
//! handles whole batches per transaction instead, see [`crate::stream`].)

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{AfterCommit, Consumer, Context, Event, Settings};

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler's effect committed.
    Handled,
    /// The consumer had already handled this event: nothing was done.
    Duplicate,
    /// The handler failed; it runs again later.
    Retrying { failures: u32 },
    /// The handler failed for the last time; the event is a dead letter.
    DeadLettered,
}

/// Columns of `events` as [`Event`] reads them.
pub(crate) const EVENT_COLUMNS: &str =
    "id, position, type, aggregate_type, aggregate_id, payload, occurred_at";

/// Runs `consumer`'s handler on `event`, whose earlier attempts failed
/// `failures` times, unless the consumer already handled it. A failure (an
/// error or a panic) is recorded for a later retry or as a dead letter.
pub async fn deliver(
    pool: &PgPool,
    consumer: &Consumer,
    event: &Event,
    failures: u32,
    settings: &Settings,
) -> anyhow::Result<Outcome> {
    let mut tx = pool.begin().await?;
    if !claim_key(&mut tx, &consumer.name, event.id).await? {
        tx.rollback().await?;
        forget_retry(pool, &consumer.name, event.id).await?;
        return Ok(Outcome::Duplicate);
    }
    let mut after = Vec::new();
    match run_handler(consumer, &mut tx, event, failures, &mut after).await {
        Ok(()) => {
            forget_retry(&mut *tx, &consumer.name, event.id).await?;
            tx.commit().await?;
            handled(consumer, event, 1);
            run_after_commit(after).await;
            Ok(Outcome::Handled)
        }
        Err(error) => {
            // The connection may be mid-statement after a panic: drop it
            // rather than reuse it.
            drop(tx);
            let mut conn = pool.acquire().await?;
            record_failure(&mut conn, consumer, event, failures + 1, &error, settings).await
        }
    }
}

/// Handles `events` (first attempts, as a JetStream batch brings them) in
/// one transaction: the processed-event keys of all of them are claimed at
/// once, the handlers run for the ones not seen before, and one commit
/// makes it all durable. `Ok(false)` when a handler failed: nothing was
/// committed, and the caller delivers them one by one ([`deliver`]) so the
/// good ones commit and the failing one goes to the retry lane.
pub async fn deliver_batch(
    pool: &PgPool,
    consumer: &Consumer,
    events: &[Event],
) -> anyhow::Result<bool> {
    let mut tx = pool.begin().await?;
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let fresh: std::collections::HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(
        "INSERT INTO processed_events (consumer, event_id)
         SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(&consumer.name)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut after = Vec::new();
    let mut done = 0;
    for event in events.iter().filter(|e| fresh.contains(&e.id)) {
        if run_handler(consumer, &mut tx, event, 0, &mut after)
            .await
            .is_err()
        {
            return Ok(false);
        }
        done += 1;
    }
    tx.commit().await?;
    if let Some(last) = events.last() {
        handled(consumer, last, done);
    }
    run_after_commit(after).await;
    Ok(true)
}

/// Inserts the processed-event key; `false` when it already existed.
pub(crate) async fn claim_key(
    conn: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Drops `consumer`'s pending retry of `event_id`, if any.
async fn forget_retry(
    conn: impl sqlx::PgExecutor<'_>,
    consumer: &str,
    event_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM event_retries WHERE consumer = $1 AND event_id = $2")
        .bind(consumer)
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs the handler, turning a panic into an error so one bad event cannot
/// take its consumer down.
pub(crate) async fn run_handler(
    consumer: &Consumer,
    tx: &mut PgConnection,
    event: &Event,
    failures: u32,
    after: &mut Vec<AfterCommit>,
) -> anyhow::Result<()> {
    let mut cx = Context::new(tx, failures, after);
    match AssertUnwindSafe(consumer.handler.handle(&mut cx, event))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the handler panicked".into());
            Err(anyhow::anyhow!("panic: {message}"))
        }
    }
}

pub(crate) async fn run_after_commit(after: Vec<AfterCommit>) {
    for work in after {
        work.await;
    }
}

pub(crate) fn handled(consumer: &Consumer, event: &Event, count: u64) {
    metrics::counter!("events_handled_total", "consumer" => consumer.name.clone()).increment(count);
    let lag = (chrono::Utc::now() - event.occurred_at)
        .to_std()
        .unwrap_or_default();
    metrics::histogram!("events_consumer_lag_seconds", "consumer" => consumer.name.clone())
        .record(lag.as_secs_f64());
}

/// Records the `failures`-th failure of `event`: a retry after back-off, or
/// a dead letter once `max_attempts` is reached. Either way the consumer's
/// stream moves on.
pub(crate) async fn record_failure(
    conn: &mut PgConnection,
    consumer: &Consumer,
    event: &Event,
    failures: u32,
    error: &anyhow::Error,
    settings: &Settings,
) -> anyhow::Result<Outcome> {
    let message = format!("{error:#}");
    metrics::counter!("events_failed_total", "consumer" => consumer.name.clone()).increment(1);
    if failures >= settings.max_attempts {
        tracing::error!(
            consumer = %consumer.name, event.id = %event.id, event.type = %event.event_type,
            attempts = failures, error = %message, "event dead-lettered"
        );
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(
            "INSERT INTO dead_letters (id, consumer, event_id, event_type, payload, error, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (consumer, event_id) WHERE replayed_at IS NULL DO NOTHING",
        )
        .bind(rentify_platform::ids::new_id())
        .bind(&consumer.name)
        .bind(event.id)
        .bind(&event.event_type)
        .bind(&event.payload)
        .bind(&message)
        .bind(failures as i32)
        .execute(&mut *tx)
        .await?;
        forget_retry(&mut *tx, &consumer.name, event.id).await?;
        tx.commit().await?;
        metrics::counter!("events_dead_lettered_total", "consumer" => consumer.name.clone())
            .increment(1);
        return Ok(Outcome::DeadLettered);
    }
    let delay = settings.retry.next(failures);
    tracing::warn!(
        consumer = %consumer.name, event.id = %event.id, event.type = %event.event_type,
        attempts = failures, retry_in_ms = delay.as_millis() as u64, error = %message,
        "event handler failed; will retry"
    );
    sqlx::query(
        "INSERT INTO event_retries (consumer, event_id, attempts, next_attempt_at, last_error)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)
         ON CONFLICT (consumer, event_id) DO UPDATE
         SET attempts = EXCLUDED.attempts, next_attempt_at = EXCLUDED.next_attempt_at,
             last_error = EXCLUDED.last_error",
    )
    .bind(&consumer.name)
    .bind(event.id)
    .bind(failures as i32)
    .bind(delay.as_secs_f64())
    .bind(&message)
    .execute(&mut *conn)
    .await?;
    Ok(Outcome::Retrying { failures })
}

/// How long a claimed retry is reserved for the process that claimed it; a
/// process that dies leaves it to another after this.
const RETRY_LEASE_SECS: f64 = 300.0;

/// Runs `consumer`'s retries that are due (up to `limit`), claiming them
/// so that several processes never run the same one. Returns how many ran.
pub async fn run_due_retries(
    pool: &PgPool,
    consumer: &Consumer,
    settings: &Settings,
    limit: i64,
) -> anyhow::Result<usize> {
    let claimed: Vec<(Uuid, i32)> = sqlx::query_as(
        "UPDATE event_retries r SET next_attempt_at = now() + make_interval(secs => $3)
         WHERE (r.consumer, r.event_id) IN (
             SELECT consumer, event_id FROM event_retries
             WHERE consumer = $1 AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING r.event_id, r.attempts",
    )
    .bind(&consumer.name)
    .bind(limit)
    .bind(RETRY_LEASE_SECS)
    .fetch_all(pool)
    .await?;
    for (event_id, attempts) in &claimed {
        let event: Option<Event> =
            sqlx::query_as(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
                .bind(event_id)
                .fetch_optional(pool)
                .await?;
        match event {
            Some(event) => {
                deliver(pool, consumer, &event, *attempts as u32, settings).await?;
            }
            // Deleted by retention: nothing left to deliver.
            None => forget_retry(pool, &consumer.name, *event_id).await?,
        }
    }
    Ok(claimed.len())
}
