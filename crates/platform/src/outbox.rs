//! The write side of the transactional outbox: modules record a domain event
//! in the same transaction as the state change it describes, so an event is
//! published if and only if the change committed. Consumers (the events
//! module) read the `events` table; nobody publishes directly.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::ids::new_id;

/// A domain event about to be recorded.
#[derive(Debug, Clone)]
pub struct NewEvent<'a, P: Serialize> {
    /// `<aggregate>.<what happened>`, e.g. `booking.requested`.
    pub event_type: &'a str,
    /// e.g. `booking`.
    pub aggregate_type: &'a str,
    pub aggregate_id: String,
    pub payload: P,
}

/// Records `event` on `conn`, which must be the caller's open transaction.
pub async fn record<P: Serialize>(
    conn: &mut PgConnection,
    event: NewEvent<'_, P>,
) -> anyhow::Result<Uuid> {
    let id = new_id();
    let payload = serde_json::to_value(&event.payload)?;
    sqlx::query(
        "INSERT INTO events (id, type, aggregate_type, aggregate_id, payload) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(event.event_type)
    .bind(event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(payload)
    .execute(conn)
    .await?;
    Ok(id)
}
