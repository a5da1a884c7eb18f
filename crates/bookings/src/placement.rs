//! Placing a new booking in one round trip (ADR 0008).
//!
//! [`service::create`](crate::service::create) validates and prices in Rust,
//! then hands the finished row, its first event and the response to the SQL
//! function `place_booking`, which claims the Idempotency-Key, re-checks the
//! listing's status and version, checks opening hours, claims a unit and
//! writes everything, atomically, in one statement. A booking race is
//! decided by round trips; this path has one.

use chrono::{DateTime, Utc};
use rentify_listings::{inventory, terms::BookingTerms};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::BookingRow;

/// What `place_booking` answered.
#[derive(Debug)]
pub enum Placed {
    /// Created on this unit; the stored response body (with the unit).
    Created {
        unit: i32,
        body: Value,
    },
    /// The key was used before with this very request: its first answer.
    Replay {
        status: i16,
        body: Value,
    },
    KeyReused,
    KeyInProgress,
    NotFound,
    /// The listing is not active (its status).
    Unavailable(String),
    /// The listing changed since the terms were read: reload and retry.
    Stale,
    OutsideAvailability,
    Conflict,
    /// A conflict in which some overlapping request is overdue: decline
    /// those and retry.
    ConflictExpired,
}

/// The Idempotency-Key part of a placement.
pub struct KeyClaim<'a> {
    pub principal: &'a str,
    pub key: Option<&'a str>,
    pub fingerprint: &'a [u8],
    pub path: &'a str,
    pub ttl_hours: u32,
}

/// The row of `bookings` as JSON for `jsonb_populate_record(NULL::bookings,
/// ..)`: every column, named as in the table (the unit is set by the
/// function once it is claimed).
pub fn row_json(row: &BookingRow, idempotency_key: Option<&str>) -> Value {
    json!({
        "id": row.id,
        "listing_id": row.listing_id,
        "renter_id": row.renter_id,
        "owner_id": row.owner_id,
        "parent_id": row.parent_id,
        "unit": row.unit,
        "status": row.status,
        "status_reason": row.status_reason,
        "start_time": row.start_time,
        "end_time": row.end_time,
        "time_zone": row.time_zone,
        "delivery_method": row.delivery_method,
        "delivery_address": row.delivery_address,
        "protection_plan": row.protection_plan,
        "service_package": row.service_package,
        "cancellation_policy": row.cancellation_policy,
        "currency": row.currency,
        "pricing_snapshot": row.pricing_snapshot,
        "subtotal": row.subtotal,
        "fees": row.fees,
        "deposit": row.deposit,
        "total": row.total,
        "idempotency_key": idempotency_key,
        "approval_expires_at": row.approval_expires_at,
        "approved_at": row.approved_at,
        "cancelled_by": row.cancelled_by,
        "refund": row.refund,
        "dispute": row.dispute,
        "resolution": row.resolution,
        "version": row.version,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// Calls `place_booking` for `row` (whose `unit` is a placeholder).
#[allow(clippy::too_many_arguments)]
pub async fn place(
    conn: &mut PgConnection,
    key: &KeyClaim<'_>,
    terms: &BookingTerms,
    row: &BookingRow,
    event_type: &str,
    event_id: Uuid,
    response: &Value,
) -> anyhow::Result<Placed> {
    let span_end: DateTime<Utc> = inventory::span_end(terms, row.end_time);
    let event = json!({
        "id": event_id,
        "type": event_type,
        "payload": row.event_payload(None, Some(row.renter_id), None),
    });
    let (outcome, unit, status, body): (String, Option<i32>, Option<i16>, Option<Value>) =
        sqlx::query_as(
            "SELECT outcome, unit, response_status, response_body FROM place_booking(
                $1, $2, $3, 'POST', $4, $5, $6, $7, $8, $9, $10, tstzrange($9, $11), $12, $13,
                $14, $15, $16, $17)",
        )
        .bind(key.principal)
        .bind(key.key)
        .bind(key.fingerprint)
        .bind(key.path)
        .bind(key.ttl_hours as i32)
        .bind(terms.listing_id)
        .bind(terms.version)
        .bind(terms.quantity)
        .bind(row.start_time)
        .bind(row.end_time)
        .bind(span_end)
        .bind(Uuid::now_v7())
        .bind(row.id)
        .bind(row.approval_expires_at)
        // Text, not jsonb: PostgreSQL parses them only for a placed booking.
        .bind(row_json(row, key.key).to_string())
        .bind(event.to_string())
        .bind(response.to_string())
        .fetch_one(conn)
        .await?;
    Ok(match outcome.as_str() {
        "created" => Placed::Created {
            unit: unit.ok_or_else(|| anyhow::anyhow!("place_booking created without a unit"))?,
            body: body.unwrap_or(Value::Null),
        },
        "replay" => Placed::Replay {
            status: status.unwrap_or(200),
            body: body.unwrap_or(Value::Null),
        },
        "key_reused" => Placed::KeyReused,
        "in_progress" => Placed::KeyInProgress,
        "not_found" => Placed::NotFound,
        "unavailable" => Placed::Unavailable(
            body.and_then(|b| b.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        "stale" => Placed::Stale,
        "outside_availability" => Placed::OutsideAvailability,
        "conflict" => Placed::Conflict,
        "conflict_expired" => Placed::ConflictExpired,
        other => anyhow::bail!("place_booking answered an unknown outcome `{other}`"),
    })
}
