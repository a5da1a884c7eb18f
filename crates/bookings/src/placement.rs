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
    /// Something to pay and no card given nor a default one (402).
    PaymentMethodRequired,
    /// The given card is not the renter's (or was removed).
    PaymentMethodUnknown,
}

/// The payment part of a placement: the renter, their chosen card (`None`:
/// the default one) and the id of the payment intent to open.
pub struct Payment {
    pub renter: Uuid,
    pub method: Option<Uuid>,
    pub intent: Uuid,
}

/// The Idempotency-Key part of a placement.
pub struct KeyClaim<'a> {
    pub principal: &'a str,
    pub key: Option<&'a str>,
    pub fingerprint: &'a [u8],
    pub path: &'a str,
    pub ttl_hours: u32,
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
    response: &str,
    payment: Option<&Payment>,
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
                $14, $15, $16, $17, $18, $19, $20)",
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
        // The unit is held until the approval deadline of a request, or
        // the payment deadline of a booking awaiting its authorization.
        .bind(row.approval_expires_at.or(row.payment_expires_at))
        // Text, not jsonb: PostgreSQL parses them only for a placed booking.
        .bind(serde_json::to_string(row)?)
        .bind(event.to_string())
        .bind(response)
        .bind(row.renter_id)
        .bind(payment.and_then(|p| p.method))
        .bind(payment.map(|p| p.intent))
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
        "payment_method_required" => Placed::PaymentMethodRequired,
        "payment_method_unknown" => Placed::PaymentMethodUnknown,
        other => anyhow::bail!("place_booking answered an unknown outcome `{other}`"),
    })
}
