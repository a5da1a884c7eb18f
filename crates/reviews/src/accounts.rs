//! The columns of identity's `users` table this module reads and keeps:
//! `rating_summary` and `response_time_avg` are derived from reviews and
//! booking events, which this module owns, and the verification flags feed
//! the trust score. They live on the account because the public profile
//! (`GET /v1/users/{id}`) and the search index read them there. Every such
//! query is in this file, so that moving them behind identity's API is one
//! change.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// Whether `user_id` is an account that was not erased.
pub async fn is_active(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND status = 'active')")
        .bind(user_id)
        .fetch_one(conn)
        .await
}

/// `users.rating_summary`: `{avg, count}` over the published, visible
/// reviews a user received; `avg` to 2 decimals, `null` without reviews.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RatingSummary {
    pub avg: Option<f64>,
    pub count: i64,
}

/// Recomputes `user_id`'s rating summary from the reviews; returns it when
/// it changed (nothing is written otherwise, so a redelivered event or a
/// review that changes nothing public announces nothing).
pub async fn refresh_rating_summary(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Option<RatingSummary>> {
    let changed: Option<(Option<f64>, i64)> = sqlx::query_as(
        "WITH s AS (
             SELECT count(*) AS n, round(avg(rating)::numeric, 2) AS avg
               FROM reviews
              WHERE target_id = $1 AND status = 'published' AND visible_at IS NOT NULL
         ), summary AS (
             SELECT jsonb_build_object('avg', s.avg, 'count', s.n) AS doc, s.avg, s.n FROM s
         )
         UPDATE users u SET rating_summary = summary.doc
           FROM summary
          WHERE u.id = $1 AND u.rating_summary IS DISTINCT FROM summary.doc
         RETURNING summary.avg::float8, summary.n",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(changed.map(|(avg, count)| RatingSummary { avg, count }))
}

/// Recomputes `owner_id`'s `response_time_avg`: the mean time to answer
/// their last [`RESPONSE_TIME_WINDOW`] booking requests (from
/// `trust_bookings`), `NULL` when they never answered one.
pub async fn refresh_response_time(conn: &mut PgConnection, owner_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "WITH recent AS (
             SELECT greatest(extract(epoch FROM answered_at - requested_at), 0) AS secs
               FROM trust_bookings
              WHERE owner_id = $1 AND requested_at IS NOT NULL AND answered_at IS NOT NULL
              ORDER BY requested_at DESC
              LIMIT $2
         ), mean AS (
             SELECT make_interval(secs => round(avg(secs), 3)::float8) AS value FROM recent
         )
         UPDATE users u SET response_time_avg = mean.value
           FROM mean
          WHERE u.id = $1 AND u.response_time_avg IS DISTINCT FROM mean.value",
    )
    .bind(owner_id)
    .bind(RESPONSE_TIME_WINDOW)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many recent answers the rolling response time averages.
pub const RESPONSE_TIME_WINDOW: i64 = 20;

/// What identity knows about a user that the trust score uses.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AccountSignals {
    pub identity_verified: bool,
    pub email_verified: bool,
    pub phone_verified: bool,
    pub response_time_secs: Option<f64>,
}

/// `user_id`'s verification flags and response time; `None` for an
/// unknown or erased account (which gets no score).
pub async fn signals(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> sqlx::Result<Option<AccountSignals>> {
    sqlx::query_as(
        "SELECT identity_status = 'verified' AS identity_verified,
                email_verified_at IS NOT NULL AS email_verified,
                phone_verified_at IS NOT NULL AS phone_verified,
                extract(epoch FROM response_time_avg)::float8 AS response_time_secs
           FROM users WHERE id = $1 AND status = 'active'",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
}
