//! Units of inventory held by bookings: the `booked` availability windows.
//!
//! A booking holds one unit of its listing for `[start, end + buffer)` (the
//! window's `span`); the exclusion constraint `availability_no_overlap`
//! refuses two blocked/booked windows on one unit whose spans overlap, so
//! double booking is impossible whatever the callers do. Every function
//! here runs on the caller's transaction: the window exists if and only if
//! the booking that holds it committed. New bookings claim their unit
//! inside the SQL function `place_booking` (`claim_unit`, ADR 0008).

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::terms::BookingTerms;

/// What [`check`] found, without changing anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    pub within_opening_hours: bool,
    pub free_units: i32,
}

/// The end of what a booking occupies: its end plus the listing's buffer.
pub fn span_end(terms: &BookingTerms, end: DateTime<Utc>) -> DateTime<Utc> {
    end + Duration::minutes(i64::from(terms.rules.buffer_minutes))
}

/// Whether the listing has opening hours and `[start, end)` is outside all
/// of them (`$1` listing, `$3` start, `$4` end). Both probes use the
/// `availability_open_no_overlap` index.
const OUTSIDE_OPENING_HOURS: &str = "(EXISTS (SELECT 1 FROM availability_windows
                   WHERE listing_id = $1 AND status = 'available')
      AND NOT EXISTS (SELECT 1 FROM availability_windows
                       WHERE listing_id = $1 AND status = 'available'
                         AND span @> tstzrange($3, $4)))";

/// Claims exactly `unit` for `[start, end)` (plus buffer); `false` when it
/// is taken. Extensions use it: the extra time must be on the same unit.
/// `hold_until` is a request's approval deadline (`None` once approved).
pub async fn claim_exact(
    conn: &mut PgConnection,
    terms: &BookingTerms,
    unit: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    booking_id: Uuid,
    hold_until: Option<DateTime<Utc>>,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO availability_windows
                (id, listing_id, unit, status, start_time, end_time, span, booking_id, hold_expires_at)
         VALUES ($1, $2, $3, 'booked', $4, $5, tstzrange($4, $6), $7, $8)
         ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(terms.listing_id)
    .bind(unit)
    .bind(start)
    .bind(end)
    .bind(span_end(terms, end))
    .bind(booking_id)
    .bind(hold_until)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes `booking_id`'s hold permanent (the request was approved): its
/// window no longer lapses.
pub async fn confirm(conn: &mut PgConnection, booking_id: Uuid) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE availability_windows SET hold_expires_at = NULL
          WHERE booking_id = $1 AND status = 'booked'",
    )
    .bind(booking_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Drops the buffer after `booking_id` (its window then spans exactly the
/// booked time), so an extension can follow it directly on the same unit.
pub async fn trim_buffer(conn: &mut PgConnection, booking_id: Uuid) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE availability_windows SET span = tstzrange(start_time, end_time)
          WHERE booking_id = $1 AND status = 'booked'",
    )
    .bind(booking_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives the unit held by `booking_id` back (declined, cancelled).
pub async fn release(conn: &mut PgConnection, booking_id: Uuid) -> anyhow::Result<u64> {
    let done =
        sqlx::query("DELETE FROM availability_windows WHERE booking_id = $1 AND status = 'booked'")
            .bind(booking_id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}

/// Whether `[start, end)` could be booked now (a read-only dry run of the
/// claim that `place_booking` makes; the answer can change as soon as it is
/// given).
pub async fn check(
    conn: &mut PgConnection,
    terms: &BookingTerms,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<Availability> {
    let sql = format!(
        "SELECT NOT {OUTSIDE_OPENING_HOURS},
                $2 - (SELECT count(DISTINCT unit) FROM availability_windows
                       WHERE listing_id = $1 AND status <> 'available'
                         AND span && tstzrange($3, $5)
                         -- A request whose hold lapsed gives way to a booking.
                         AND NOT coalesce(hold_expires_at <= now(), false))::int"
    );
    let (within_opening_hours, free_units): (bool, i32) = sqlx::query_as(&sql)
        .bind(terms.listing_id)
        .bind(terms.quantity)
        .bind(start)
        .bind(end)
        .bind(span_end(terms, end))
        .fetch_one(conn)
        .await?;
    Ok(Availability {
        within_opening_hours,
        free_units: free_units.max(0),
    })
}
