//! The `trust` consumer: gathers a user's trust signals and stores the
//! score of [`crate::trust::score`] in `trust_scores` whenever one of them
//! may have changed:
//!
//! - `booking.*`: the booking facts the rates need are projected into
//!   `trust_bookings` (set-once facts, so order and redelivery do not
//!   matter), the owner's rolling response time is refreshed on the
//!   request and its answer, and both parties are rescored;
//! - `user.identity_verified`, `user.email_verified`,
//!   `user.phone_verified`, `user.rating_updated`: that user is rescored.
//!
//! A new score is announced as `user.trust_updated {user_id, score}`.
//! Events that do not parse, or name unknown accounts, are skipped: a
//! projection takes the stream as it comes, and one odd event must not
//! hold the others back as a dead letter would.
//!
//! Response time: the owner's clock starts at `booking.requested` and stops
//! at their `booking.approved`/`booking.declined`; a request left to the
//! approval timer (`approval_timeout`) counts as answered when it expired,
//! since that is what the renter waited, and ignoring it would reward not
//! answering.

use chrono::{DateTime, Utc};
use rentify_events::{Consumer, Context, Event, Handler, Priority};
use rentify_platform::outbox::{self, NewEvent};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{accounts, trust};

pub fn consumer() -> Consumer {
    Consumer::new("trust", Trust)
        .on("booking.*")
        .on("user.identity_verified")
        .on("user.email_verified")
        .on("user.phone_verified")
        .on("user.rating_updated")
        // Scores are not urgent; bookings and payments go first.
        .priority(Priority::Background)
}

struct Trust;

#[async_trait::async_trait]
impl Handler for Trust {
    async fn handle(&self, cx: &mut Context<'_>, event: &Event) -> anyhow::Result<()> {
        let users = if event.event_type.starts_with("booking.") {
            project(&mut *cx.tx, event).await?
        } else {
            event
                .uuid("user_id")
                .or_else(|| event.aggregate_id.parse().ok())
                .into_iter()
                .collect()
        };
        for user_id in users {
            rescore(&mut *cx.tx, user_id).await?;
        }
        Ok(())
    }
}

/// The fields of a `booking.*` payload the projection uses.
#[derive(Debug, Deserialize)]
struct BookingFacts {
    booking_id: Uuid,
    renter_id: Uuid,
    owner_id: Uuid,
    #[serde(default)]
    parent_id: Option<Uuid>,
    #[serde(default)]
    actor_id: Option<Uuid>,
    #[serde(default)]
    reason: Option<String>,
}

/// What one booking event says, as set-once facts.
#[derive(Debug, Default, PartialEq)]
struct Facts {
    engaged: bool,
    requested_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    cancelled_by: Option<Uuid>,
    disputed_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

/// The facts `event_type` establishes about `booking` at `at`; `None` for
/// events that change no signal (started, extended, resolved, …).
fn facts(event_type: &str, booking: &BookingFacts, at: DateTime<Utc>) -> Option<Facts> {
    let by_owner = booking.actor_id == Some(booking.owner_id);
    let facts = match event_type {
        "booking.requested" => Facts {
            engaged: true,
            requested_at: Some(at),
            ..Facts::default()
        },
        "booking.approved" => Facts {
            engaged: true,
            answered_at: by_owner.then_some(at),
            ..Facts::default()
        },
        "booking.declined" => {
            let timed_out =
                booking.actor_id.is_none() && booking.reason.as_deref() == Some("approval_timeout");
            Facts {
                answered_at: (by_owner || timed_out).then_some(at),
                ..Facts::default()
            }
        }
        "booking.cancelled" => Facts {
            cancelled_by: booking
                .actor_id
                .filter(|a| *a == booking.renter_id || *a == booking.owner_id),
            ..Facts::default()
        },
        "booking.disputed" => Facts {
            disputed_at: Some(at),
            ..Facts::default()
        },
        "booking.completed" => Facts {
            completed_at: Some(at),
            ..Facts::default()
        },
        _ => return None,
    };
    Some(facts)
}

/// Applies a booking event to `trust_bookings`; returns the users whose
/// score may have changed.
async fn project(conn: &mut PgConnection, event: &Event) -> anyhow::Result<Vec<Uuid>> {
    let booking: BookingFacts = match serde_json::from_value(event.payload.clone()) {
        Ok(booking) => booking,
        Err(error) => {
            tracing::warn!(event.id = %event.id, event.type = %event.event_type, %error, "booking event the trust score cannot read; skipped");
            return Ok(Vec::new());
        }
    };
    // An extension continues its parent booking; it is not another one.
    if booking.parent_id.is_some() || booking.renter_id == booking.owner_id {
        return Ok(Vec::new());
    }
    let Some(facts) = facts(&event.event_type, &booking, event.occurred_at) else {
        return Ok(Vec::new());
    };
    sqlx::query(
        "INSERT INTO trust_bookings (booking_id, renter_id, owner_id, engaged, requested_at,
                                     answered_at, cancelled_by, disputed_at, completed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (booking_id) DO UPDATE SET
             engaged = trust_bookings.engaged OR EXCLUDED.engaged,
             requested_at = COALESCE(trust_bookings.requested_at, EXCLUDED.requested_at),
             answered_at = COALESCE(trust_bookings.answered_at, EXCLUDED.answered_at),
             cancelled_by = COALESCE(trust_bookings.cancelled_by, EXCLUDED.cancelled_by),
             disputed_at = COALESCE(trust_bookings.disputed_at, EXCLUDED.disputed_at),
             completed_at = COALESCE(trust_bookings.completed_at, EXCLUDED.completed_at),
             updated_at = now()",
    )
    .bind(booking.booking_id)
    .bind(booking.renter_id)
    .bind(booking.owner_id)
    .bind(facts.engaged)
    .bind(facts.requested_at)
    .bind(facts.answered_at)
    .bind(facts.cancelled_by)
    .bind(facts.disputed_at)
    .bind(facts.completed_at)
    .execute(&mut *conn)
    .await?;
    if facts.requested_at.is_some() || facts.answered_at.is_some() {
        accounts::refresh_response_time(conn, booking.owner_id).await?;
    }
    Ok(vec![booking.renter_id, booking.owner_id])
}

/// What `trust_bookings` and the reviews say about a user.
#[derive(sqlx::FromRow)]
struct Activity {
    bookings: i64,
    completed: i64,
    cancelled: i64,
    disputed: i64,
    rating_avg: Option<f64>,
    rating_count: i64,
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The signals of `user_id`; `None` for an unknown or erased account.
pub async fn signals_of(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> anyhow::Result<Option<trust::Signals>> {
    let Some(account) = accounts::signals(conn, user_id).await? else {
        return Ok(None);
    };
    let activity: Activity = sqlx::query_as(
        "SELECT b.bookings, b.completed, b.cancelled, b.disputed, r.rating_avg, r.rating_count
           FROM (SELECT count(*) FILTER (WHERE engaged) AS bookings,
                        count(*) FILTER (WHERE engaged AND completed_at IS NOT NULL) AS completed,
                        count(*) FILTER (WHERE engaged AND cancelled_by = $1) AS cancelled,
                        count(*) FILTER (WHERE engaged AND disputed_at IS NOT NULL) AS disputed
                   FROM trust_bookings WHERE renter_id = $1 OR owner_id = $1) b,
                (SELECT avg(rating)::float8 AS rating_avg, count(*) AS rating_count
                   FROM reviews
                  WHERE target_id = $1 AND status = 'published' AND visible_at IS NOT NULL) r",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some(trust::Signals {
        identity_verified: account.identity_verified,
        email_verified: account.email_verified,
        phone_verified: account.phone_verified,
        response_time_secs: account.response_time_secs,
        bookings: count(activity.bookings),
        completed: count(activity.completed),
        cancelled: count(activity.cancelled),
        disputed: count(activity.disputed),
        rating_avg: activity.rating_avg,
        rating_count: count(activity.rating_count),
    }))
}

/// Recomputes and stores `user_id`'s score; records `user.trust_updated`
/// when the score is new or different.
pub async fn rescore(conn: &mut PgConnection, user_id: Uuid) -> anyhow::Result<()> {
    let Some(signals) = signals_of(conn, user_id).await? else {
        return Ok(());
    };
    let scored = trust::score(&signals);
    let previous: Option<i16> =
        sqlx::query_scalar("SELECT score FROM trust_scores WHERE user_id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    let score = i16::from(scored.score);
    sqlx::query(
        "INSERT INTO trust_scores (user_id, score, components, computed_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (user_id) DO UPDATE
            SET score = EXCLUDED.score, components = EXCLUDED.components, computed_at = now()",
    )
    .bind(user_id)
    .bind(score)
    .bind(serde_json::to_value(scored.components)?)
    .execute(&mut *conn)
    .await?;
    if previous != Some(score) {
        outbox::record(
            conn,
            NewEvent {
                event_type: "user.trust_updated",
                aggregate_type: "user",
                aggregate_id: user_id.to_string(),
                payload: json!({ "user_id": user_id, "score": score }),
            },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy)]
    enum Who {
        Owner,
        Renter,
        Nobody,
    }
    use Who::{Nobody, Owner, Renter};

    /// A booking's facts with `who` acting; (facts, renter, owner).
    fn booking(who: Who, reason: Option<&str>) -> (BookingFacts, Uuid, Uuid) {
        let (renter, owner) = (Uuid::now_v7(), Uuid::now_v7());
        let facts = BookingFacts {
            booking_id: Uuid::now_v7(),
            renter_id: renter,
            owner_id: owner,
            parent_id: None,
            actor_id: match who {
                Owner => Some(owner),
                Renter => Some(renter),
                Nobody => None,
            },
            reason: reason.map(str::to_owned),
        };
        (facts, renter, owner)
    }

    #[test]
    fn the_owner_answering_stops_the_clock_others_do_not() {
        let now = Utc::now();
        let (by_owner, _, _) = booking(Owner, None);
        assert_eq!(
            facts("booking.approved", &by_owner, now)
                .unwrap()
                .answered_at,
            Some(now)
        );
        assert_eq!(
            facts("booking.declined", &by_owner, now)
                .unwrap()
                .answered_at,
            Some(now)
        );
        // Instant book or a confirmed payment: nobody answered anything.
        let (by_system, _, _) = booking(Nobody, None);
        let approved = facts("booking.approved", &by_system, now).unwrap();
        assert!(approved.engaged);
        assert_eq!(approved.answered_at, None);
        // Left to the timer: answered when it expired.
        let (timed_out, _, _) = booking(Nobody, Some("approval_timeout"));
        assert_eq!(
            facts("booking.declined", &timed_out, now)
                .unwrap()
                .answered_at,
            Some(now)
        );
        let requested = facts("booking.requested", &by_system, now).unwrap();
        assert_eq!(
            (requested.engaged, requested.requested_at),
            (true, Some(now))
        );
    }

    #[test]
    fn cancellations_are_charged_to_the_party_who_cancelled() {
        let now = Utc::now();
        let (b, renter, _) = booking(Renter, None);
        assert_eq!(
            facts("booking.cancelled", &b, now).unwrap().cancelled_by,
            Some(renter)
        );
        let (b, _, owner) = booking(Owner, None);
        assert_eq!(
            facts("booking.cancelled", &b, now).unwrap().cancelled_by,
            Some(owner)
        );
        // The system (payment failures) and admins are nobody's fault here.
        let (b, _, _) = booking(Nobody, Some("payment_timeout"));
        assert_eq!(
            facts("booking.cancelled", &b, now).unwrap().cancelled_by,
            None
        );
        let mut b = b;
        b.actor_id = Some(Uuid::now_v7());
        assert_eq!(
            facts("booking.cancelled", &b, now).unwrap().cancelled_by,
            None
        );
    }

    #[test]
    fn events_that_change_no_signal_are_left_alone() {
        let (b, _, _) = booking(Owner, None);
        for event in [
            "booking.started",
            "booking.extended",
            "booking.resolved",
            "booking.pending_payment",
            "booking.payment_failed",
        ] {
            assert_eq!(facts(event, &b, Utc::now()), None, "{event}");
        }
        assert!(
            facts("booking.disputed", &b, Utc::now())
                .unwrap()
                .disputed_at
                .is_some()
        );
        assert!(
            facts("booking.completed", &b, Utc::now())
                .unwrap()
                .completed_at
                .is_some()
        );
    }
}
