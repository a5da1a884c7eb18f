//! Retention of delivered events: the outbox and the processed-event keys
//! are kept `days` and then deleted, except what is still needed (an event
//! some consumer has not passed, has a retry pending or is a dead letter
//! waiting for an operator).

use sqlx::PgConnection;

/// Deleted rows: `(events, processed_event_keys)`.
pub async fn purge(conn: &mut PgConnection, days: u32) -> sqlx::Result<(u64, u64)> {
    let keys = sqlx::query(
        "DELETE FROM processed_events WHERE processed_at < now() - make_interval(days => $1)",
    )
    .bind(days as i32)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let events = sqlx::query(
        "DELETE FROM events e
          WHERE e.occurred_at < now() - make_interval(days => $1)
            AND NOT EXISTS (SELECT 1 FROM event_cursors c
                             WHERE (c.tx_id, c.position) < (e.tx_id, e.position))
            AND NOT EXISTS (SELECT 1 FROM event_retries r WHERE r.event_id = e.id)
            AND NOT EXISTS (SELECT 1 FROM dead_letters d
                             WHERE d.event_id = e.id AND d.replayed_at IS NULL)",
    )
    .bind(days as i32)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((events, keys))
}
