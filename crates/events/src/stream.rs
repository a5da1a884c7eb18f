//! In-process consumers: each reads the outbox from its own cursor, a batch
//! per transaction.
//!
//! The stream is ordered by `(tx_id, position)` and read only below
//! `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still
//! running: every event of an older transaction is final (committed or
//! gone) and no new transaction can get an older id, so moving the cursor
//! past what was read never skips an event that commits late.
//!
//! A batch runs every handler in one transaction with the processed-event
//! keys and the cursor: effect, key and position commit together. If a
//! handler fails, the batch is rolled back and re-run one event per
//! transaction, and the failing event goes to the retry lane
//! ([`crate::deliver`]) while the stream moves on.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Consumer, Event, Priority, Settings,
    deliver::{self, EVENT_COLUMNS},
};

/// A consumer's place in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// `xid8` as text: sqlx has no type for it.
    pub tx_id: u64,
    pub position: i64,
}

/// Critical consumers that are behind; background consumers wait while
/// there is any.
#[derive(Clone, Default)]
pub struct Pressure(Arc<AtomicUsize>);

impl Pressure {
    pub fn critical_behind(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// One consumer's share of the [`Pressure`]: raised while its batches come
/// back full, lowered when it catches up (or stops).
struct Share {
    pressure: Pressure,
    counts: bool,
    raised: bool,
}

impl Share {
    fn set(&mut self, behind: bool) {
        let behind = behind && self.counts;
        if behind != self.raised {
            if behind {
                self.pressure.0.fetch_add(1, Ordering::Relaxed);
            } else {
                self.pressure.0.fetch_sub(1, Ordering::Relaxed);
            }
            self.raised = behind;
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// Creates `name`'s cursor at the start of the stream if it has none, so
/// a new consumer replays history.
pub async fn register(pool: &PgPool, name: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO event_cursors (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Creates `name`'s cursor after the last event committed so far if it has
/// none, so a new consumer skips history. (Not the horizon: the horizon is
/// the whole cluster's and may lag far behind. An event of a transaction
/// that commits during the registration may be skipped too, which is the
/// meaning of "from now".)
pub async fn register_from_now(pool: &PgPool, name: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO event_cursors (name, tx_id, position)
         SELECT $1, coalesce(last.tx_id, '0'::xid8), coalesce(last.position, 0)
           FROM (SELECT 1) one
           LEFT JOIN LATERAL (
               SELECT tx_id, position FROM events
                ORDER BY tx_id DESC, position DESC LIMIT 1) last ON true
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

/// Creates `consumer`'s cursor if it has none: at the start of the stream,
/// or after the last event when it starts [`Consumer::from_now`].
pub async fn register_consumer(pool: &PgPool, consumer: &Consumer) -> sqlx::Result<()> {
    if consumer.replay {
        register(pool, &consumer.name).await
    } else {
        register_from_now(pool, &consumer.name).await
    }
}

/// Locks `name`'s cursor for this transaction; `None` when another process
/// holds it (it is running that consumer's batch). Also returns the
/// stream's horizon: the oldest transaction running now. Every event of an
/// older transaction is final, so reads below it see the same events
/// whatever their snapshot.
pub async fn lock_cursor(
    conn: &mut PgConnection,
    name: &str,
) -> sqlx::Result<Option<(Cursor, Horizon)>> {
    let row: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT tx_id::text, position, pg_snapshot_xmin(pg_current_snapshot())::text
         FROM event_cursors WHERE name = $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(tx_id, position, horizon)| {
        (
            Cursor {
                tx_id: tx_id.parse().unwrap_or(0),
                position,
            },
            Horizon(horizon.parse().unwrap_or(0)),
        )
    }))
}

/// A transaction id below which every event is final.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Horizon(pub u64);

/// Moves `name`'s cursor (locked by this transaction) to `to`.
pub async fn save_cursor(conn: &mut PgConnection, name: &str, to: Cursor) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE event_cursors SET tx_id = $2::text::xid8, position = $3, updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(to.tx_id.to_string())
    .bind(to.position)
    .execute(conn)
    .await?;
    Ok(())
}

/// The next events after `after` and below `horizon` whose type matches
/// `patterns` (SQL `LIKE`), each with where it sits in the stream, and the
/// cursor the read reached: past the last event returned or, when the
/// batch is not full, the last final event of any type, so that a consumer
/// of rare events does not re-scan the others on every poll.
pub async fn read_after(
    conn: &mut PgConnection,
    after: Cursor,
    horizon: Horizon,
    patterns: &[String],
    limit: i64,
) -> sqlx::Result<(Vec<(Cursor, Event)>, Option<Cursor>)> {
    let rows: Vec<StreamRow> = sqlx::query_as(&format!(
        "SELECT tx_id::text AS stream_tx, {EVENT_COLUMNS} FROM events
         WHERE (tx_id, position) > ($1::text::xid8, $2)
           AND tx_id < $3::text::xid8
           AND type LIKE ANY($4)
         ORDER BY events.tx_id, events.position
         LIMIT $5"
    ))
    .bind(after.tx_id.to_string())
    .bind(after.position)
    .bind(horizon.0.to_string())
    .bind(patterns)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let events: Vec<(Cursor, Event)> = rows
        .into_iter()
        .map(|row| {
            (
                Cursor {
                    tx_id: row.stream_tx.parse().unwrap_or(0),
                    position: row.event.position,
                },
                row.event,
            )
        })
        .collect();
    if events.len() as i64 == limit {
        let reached = events.last().map(|(cursor, _)| *cursor);
        return Ok((events, reached));
    }
    let tail: Option<(String, i64)> = sqlx::query_as(
        // Ordered by the xid8 column, not by its text (an unqualified
        // `tx_id` here would name the text output: "999" > "1000").
        "SELECT tx_id::text AS stream_tx, position FROM events
         WHERE (tx_id, position) > ($1::text::xid8, $2) AND tx_id < $3::text::xid8
         ORDER BY events.tx_id DESC, events.position DESC LIMIT 1",
    )
    .bind(after.tx_id.to_string())
    .bind(after.position)
    .bind(horizon.0.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let reached = tail.map(|(tx_id, position)| Cursor {
        tx_id: tx_id.parse().unwrap_or(0),
        position,
    });
    Ok((events, reached))
}

#[derive(sqlx::FromRow)]
struct StreamRow {
    stream_tx: String,
    #[sqlx(flatten)]
    event: Event,
}

/// What one pass over a consumer's stream did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Events read (handled, or handed to the retry lane).
    pub read: usize,
    /// Whether the batch was full (there may be more right away).
    pub full: bool,
    /// Another process holds the cursor.
    pub busy: bool,
}

/// Handles the next batch of `consumer`'s stream. `on_read` learns whether
/// the batch is full as soon as it is read, before it is handled, so that a
/// critical consumer raises the pressure while it works on its backlog.
pub async fn pass(
    pool: &PgPool,
    consumer: &Consumer,
    settings: &Settings,
    on_read: &mut (dyn FnMut(bool) + Send),
) -> anyhow::Result<Pass> {
    let patterns = consumer.like_patterns();
    let limit = i64::from(settings.batch_size);
    let mut tx = pool.begin().await?;
    let Some((cursor, horizon)) = lock_cursor(&mut tx, &consumer.name).await? else {
        return Ok(Pass {
            busy: true,
            ..Pass::default()
        });
    };
    let (events, reached) = read_after(&mut tx, cursor, horizon, &patterns, limit).await?;
    let full = events.len() as i64 == limit;
    on_read(full);
    let Some(reached) = reached else {
        return Ok(Pass::default());
    };
    let mut after = Vec::new();
    let mut failed = false;
    for (_, event) in &events {
        if deliver::run_handler(consumer, &mut tx, event, 0, &mut after)
            .await
            .is_err()
        {
            failed = true;
            break;
        }
    }
    if failed {
        drop(tx);
        one_by_one(pool, consumer, settings, cursor, &events, reached).await?;
    } else {
        let ids: Vec<Uuid> = events.iter().map(|(_, e)| e.id).collect();
        if !ids.is_empty() {
            sqlx::query(
                "INSERT INTO processed_events (consumer, event_id)
                 SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
            )
            .bind(&consumer.name)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        save_cursor(&mut tx, &consumer.name, reached).await?;
        tx.commit().await?;
        if let Some((_, last)) = events.last() {
            deliver::handled(consumer, last, events.len() as u64);
        }
        deliver::run_after_commit(after).await;
    }
    Ok(Pass {
        read: events.len(),
        full,
        busy: false,
    })
}

/// The slow path after a failure in a batch: each event in its own
/// transaction with the cursor, so the good ones commit and a failing one
/// is recorded for retry (or dead-lettered) and passed.
async fn one_by_one(
    pool: &PgPool,
    consumer: &Consumer,
    settings: &Settings,
    from: Cursor,
    events: &[(Cursor, Event)],
    reached: Cursor,
) -> anyhow::Result<()> {
    let mut expected = from;
    for (at, event) in events {
        let mut tx = pool.begin().await?;
        if !holds(&mut tx, &consumer.name, expected).await? {
            // Another process moved this consumer on; it owns the rest.
            return Ok(());
        }
        let mut after = Vec::new();
        let outcome = deliver::run_handler(consumer, &mut tx, event, 0, &mut after).await;
        match outcome {
            Ok(()) => {
                deliver::claim_key(&mut tx, &consumer.name, event.id).await?;
                save_cursor(&mut tx, &consumer.name, *at).await?;
                tx.commit().await?;
                deliver::handled(consumer, event, 1);
                deliver::run_after_commit(after).await;
            }
            Err(error) => {
                drop(tx);
                let mut tx = pool.begin().await?;
                if !holds(&mut tx, &consumer.name, expected).await? {
                    return Ok(());
                }
                deliver::record_failure(&mut tx, consumer, event, 1, &error, settings).await?;
                save_cursor(&mut tx, &consumer.name, *at).await?;
                tx.commit().await?;
            }
        }
        expected = *at;
    }
    // Past the events of other types the read skipped.
    if reached != expected {
        let mut tx = pool.begin().await?;
        if holds(&mut tx, &consumer.name, expected).await? {
            save_cursor(&mut tx, &consumer.name, reached).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Locks `name`'s cursor and checks it is still at `expected`.
async fn holds(conn: &mut PgConnection, name: &str, expected: Cursor) -> sqlx::Result<bool> {
    Ok(lock_cursor(conn, name).await?.map(|(cursor, _)| cursor) == Some(expected))
}

/// How often each consumer looks at its due retries.
const RETRY_SCAN: Duration = Duration::from_millis(250);

/// Runs every consumer in this process until `token` is cancelled.
pub fn spawn(
    pool: PgPool,
    consumers: Vec<Consumer>,
    settings: Settings,
    token: CancellationToken,
) -> JoinSet<()> {
    let pressure = Pressure::default();
    let mut tasks = JoinSet::new();
    for consumer in consumers {
        let (pool, settings, token, pressure) = (
            pool.clone(),
            settings.clone(),
            token.clone(),
            pressure.clone(),
        );
        tasks.spawn(async move {
            run_consumer(pool, consumer, settings, token, pressure).await;
        });
    }
    tasks
}

async fn run_consumer(
    pool: PgPool,
    consumer: Consumer,
    settings: Settings,
    token: CancellationToken,
    pressure: Pressure,
) {
    loop {
        let Err(error) = register_consumer(&pool, &consumer).await else {
            break;
        };
        tracing::warn!(consumer = %consumer.name, error = %error, "cannot register the consumer; retrying");
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let mut share = Share {
        pressure: pressure.clone(),
        counts: consumer.priority == Priority::Critical,
        raised: false,
    };
    let mut last_retry_scan = tokio::time::Instant::now();
    loop {
        if token.is_cancelled() {
            break;
        }
        let mut idle = settings.poll_interval;
        if consumer.priority == Priority::Background && pressure.critical_behind() {
            // Critical work first: look again later.
            idle = settings.poll_interval * 10;
        } else {
            match pass(&pool, &consumer, &settings, &mut |full| share.set(full)).await {
                Ok(done) if done.full => idle = Duration::ZERO,
                Ok(_) => {}
                Err(error) => {
                    share.set(false);
                    tracing::error!(consumer = %consumer.name, error = %error, "event batch failed");
                    idle = Duration::from_secs(1);
                }
            }
        }
        if last_retry_scan.elapsed() >= RETRY_SCAN {
            last_retry_scan = tokio::time::Instant::now();
            if let Err(error) = deliver::run_due_retries(&pool, &consumer, &settings, 50).await {
                tracing::error!(consumer = %consumer.name, error = %error, "event retries failed");
            }
        }
        if !idle.is_zero() {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tokio::time::sleep(idle) => {}
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
}
