//! Writing, editing, moderating and revealing reviews, one transaction
//! each, with their outbox events; and the queries behind the lists.
//!
//! Everything that decides whether both reviews of a booking exist (a new
//! review, the window timer) first takes the booking's review lock (a
//! transaction-scoped advisory lock), so two parties reviewing at the same
//! moment cannot both miss each other and stay sealed.

use axum::{http::StatusCode, response::Response};
use chrono::{DateTime, Utc};
use rentify_bookings::model::BookingRow;
use rentify_platform::{
    idempotency::{self, Begin, IdempotencyKey, Scope},
    ids::new_id,
    outbox::{self, NewEvent},
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    Reviews,
    error::{ReviewError, ReviewResult},
    model::{COLUMNS, NewReview, ReviewPatch, ReviewRow, ReviewStatus, Viewer, with_etag},
    moderation, rules,
};

/// Serialises the decisions about one booking's reviews until the
/// transaction ends.
async fn lock_booking_reviews(conn: &mut PgConnection, booking_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7412))")
        .bind(format!("reviews:{booking_id}"))
        .execute(conn)
        .await?;
    Ok(())
}

async fn record(
    conn: &mut PgConnection,
    event_type: &str,
    row: &ReviewRow,
    actor_id: Option<Uuid>,
) -> anyhow::Result<()> {
    outbox::record(
        conn,
        NewEvent {
            event_type,
            aggregate_type: "review",
            aggregate_id: row.id.to_string(),
            payload: row.event_payload(actor_id),
        },
    )
    .await?;
    Ok(())
}

/// Unseals `booking_id`'s sealed reviews (only those whose window closed
/// when `only_due`); returns them as they are now.
async fn unseal(
    conn: &mut PgConnection,
    booking_id: Uuid,
    only_due: bool,
) -> sqlx::Result<Vec<ReviewRow>> {
    sqlx::query_as(&format!(
        "UPDATE reviews SET visible_at = now(), version = version + 1, updated_at = now()
          WHERE booking_id = $1 AND visible_at IS NULL AND (NOT $2 OR window_closes_at <= now())
         RETURNING {COLUMNS}"
    ))
    .bind(booking_id)
    .bind(only_due)
    .fetch_all(conn)
    .await
}

/// The review window timer's work: reveals the booking's reviews whose
/// window has closed, each with `review.revealed`. Returns how many.
pub async fn reveal_due(conn: &mut PgConnection, booking_id: Uuid) -> anyhow::Result<usize> {
    lock_booking_reviews(conn, booking_id).await?;
    let revealed = unseal(conn, booking_id, true).await?;
    for row in &revealed {
        record(conn, "review.revealed", row, None).await?;
    }
    Ok(revealed.len())
}

/// `POST /v1/bookings/{id}/reviews`: `author`'s review of the other party
/// of `booking` (already looked up through the bookings module, which
/// answers 404 to strangers). The second review of a booking unseals both;
/// the first arms the window timer.
pub async fn create(
    r: &Reviews,
    booking: &BookingRow,
    author: Uuid,
    input: &NewReview,
    key: &IdempotencyKey,
) -> ReviewResult<Response> {
    let (role, target) = rules::author_role(booking.renter_id, booking.owner_id, author)
        .ok_or(ReviewError::NotFound)?;
    let comment = rules::clean_comment(input.comment.as_deref());
    let mut tx = r.db().begin().await?;
    let principal = author.to_string();
    let path = format!("/v1/bookings/{}/reviews", booking.id);
    let body = serde_json::to_value(input).map_err(anyhow::Error::from)?;
    let pending = match idempotency::begin(
        &mut tx,
        key,
        Scope {
            principal: &principal,
            method: "POST",
            path: &path,
            body: &body,
        },
        r.platform().config.idempotency_ttl_hours,
    )
    .await?
    {
        Begin::Replay(response) => return Ok(response),
        Begin::Proceed(pending) => pending,
    };
    // The booking reached `completed` at its last update: nothing changes
    // a completed booking but a dispute, which leaves `completed`.
    let now = Utc::now();
    let window_closes_at =
        rules::review_window(&booking.status, booking.updated_at, now, r.window())?;
    lock_booking_reviews(&mut tx, booking.id).await?;
    let existing: Vec<ReviewRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reviews WHERE booking_id = $1"
    ))
    .bind(booking.id)
    .fetch_all(&mut *tx)
    .await?;
    if existing.iter().any(|x| x.author_id == author) {
        return Err(ReviewError::Exists);
    }
    let flags = moderation::check(comment.as_deref().unwrap_or_default());
    let status = rules::status_after_checks(&flags);
    let flags: Vec<String> = flags.iter().map(|f| f.as_str().to_owned()).collect();
    let inserted: ReviewRow = sqlx::query_as(&format!(
        "INSERT INTO reviews (id, booking_id, listing_id, author_id, target_id, author_role,
                              rating, comment, status, moderation_flags, editable_until,
                              window_closes_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING {COLUMNS}"
    ))
    .bind(new_id())
    .bind(booking.id)
    .bind(booking.listing_id)
    .bind(author)
    .bind(target)
    .bind(role.as_str())
    .bind(i16::from(input.rating))
    .bind(&comment)
    .bind(status.as_str())
    .bind(&flags)
    .bind(now + rules::EDIT_WINDOW)
    .bind(window_closes_at)
    .fetch_one(&mut *tx)
    .await?;
    let revealed = if existing.iter().any(|x| x.author_id == target) {
        unseal(&mut tx, booking.id, false).await?
    } else {
        r.jobs()
            .enqueue_reveal(&mut tx, booking.id, window_closes_at)
            .await?;
        Vec::new()
    };
    let row = revealed
        .iter()
        .find(|x| x.id == inserted.id)
        .cloned()
        .unwrap_or(inserted);
    record(&mut tx, "review.submitted", &row, None).await?;
    for unsealed in &revealed {
        record(&mut tx, "review.revealed", unsealed, None).await?;
    }
    let response = pending
        .complete(&mut tx, StatusCode::CREATED, &row.view(Viewer::Author))
        .await?;
    tx.commit().await?;
    Ok(with_etag(response, row.version))
}

/// `PATCH /v1/reviews/{id}`: the author changes a review still sealed and
/// less than 48 hours old; it passes the checks again.
pub async fn update(
    r: &Reviews,
    author: Uuid,
    id: Uuid,
    headers: &axum::http::HeaderMap,
    patch: &ReviewPatch,
) -> ReviewResult<ReviewRow> {
    if let Some(Some(comment)) = &patch.comment {
        rules::check_comment_length(Some(comment))?;
    }
    let mut tx = r.db().begin().await?;
    let current: ReviewRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reviews WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .filter(|row: &ReviewRow| row.author_id == author)
    .ok_or(ReviewError::NotFound)?;
    crate::model::check_if_match(headers, current.version)?;
    rules::check_editable(&current, Utc::now())?;
    let rating = patch.rating.map(i16::from).unwrap_or(current.rating);
    let comment = match &patch.comment {
        Some(new) => rules::clean_comment(new.as_deref()),
        None => current.comment.clone(),
    };
    if rating == current.rating && comment == current.comment {
        // Nothing to change: no new version, no event.
        return Ok(current);
    }
    let flags = moderation::check(comment.as_deref().unwrap_or_default());
    let status = rules::status_after_checks(&flags);
    let flags: Vec<String> = flags.iter().map(|f| f.as_str().to_owned()).collect();
    let updated: ReviewRow = sqlx::query_as(&format!(
        "UPDATE reviews SET rating = $2, comment = $3, status = $4, moderation_flags = $5,
                version = version + 1, updated_at = now()
          WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(rating)
    .bind(&comment)
    .bind(status.as_str())
    .bind(&flags)
    .fetch_one(&mut *tx)
    .await?;
    record(&mut tx, "review.updated", &updated, Some(author)).await?;
    tx.commit().await?;
    Ok(updated)
}

/// An admin's decision on a held review.
#[derive(Clone, Copy, Debug)]
pub enum Decision<'a> {
    Approve,
    Reject { reason: &'a str },
}

/// `POST /v1/admin/reviews/{id}/approve` and `/reject`: only a `pending`
/// review can be decided (409 `invalid_transition` otherwise).
pub async fn moderate(
    r: &Reviews,
    admin: Uuid,
    id: Uuid,
    decision: Decision<'_>,
    key: &IdempotencyKey,
) -> ReviewResult<Response> {
    let (action, to, reason) = match decision {
        Decision::Approve => ("approve", ReviewStatus::Published, None),
        Decision::Reject { reason } => ("reject", ReviewStatus::Rejected, Some(reason)),
    };
    let mut tx = r.db().begin().await?;
    let principal = admin.to_string();
    let path = format!("/v1/admin/reviews/{id}/{action}");
    let body = serde_json::json!({ "reason": reason });
    let pending = match idempotency::begin(
        &mut tx,
        key,
        Scope {
            principal: &principal,
            method: "POST",
            path: &path,
            body: &body,
        },
        r.platform().config.idempotency_ttl_hours,
    )
    .await?
    {
        Begin::Replay(response) => return Ok(response),
        Begin::Proceed(pending) => pending,
    };
    let current: ReviewRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reviews WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ReviewError::NotFound)?;
    if current.status != ReviewStatus::Pending.as_str() {
        return Err(ReviewError::InvalidTransition {
            current: current.status,
        });
    }
    let updated: ReviewRow = sqlx::query_as(&format!(
        "UPDATE reviews SET status = $2, rejection_reason = $3, moderated_by = $4,
                moderated_at = now(), version = version + 1, updated_at = now()
          WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(to.as_str())
    .bind(reason)
    .bind(admin)
    .fetch_one(&mut *tx)
    .await?;
    let event = match decision {
        Decision::Approve => "review.approved",
        Decision::Reject { .. } => "review.rejected",
    };
    record(&mut tx, event, &updated, Some(admin)).await?;
    let response = pending
        .complete(&mut tx, StatusCode::OK, &updated.view(Viewer::Admin))
        .await?;
    tx.commit().await?;
    Ok(with_etag(response, updated.version))
}

/// One review as `viewer_id` (with `admin` rights or not) may see it:
/// its author and admins always, anyone else once public; 404 otherwise.
pub async fn get(
    r: &Reviews,
    viewer_id: Option<Uuid>,
    admin: bool,
    id: Uuid,
) -> ReviewResult<(ReviewRow, Viewer)> {
    let row: ReviewRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM reviews WHERE id = $1"))
        .bind(id)
        .fetch_optional(r.db())
        .await?
        .ok_or(ReviewError::NotFound)?;
    let viewer = viewer_of(&row, viewer_id, admin).ok_or(ReviewError::NotFound)?;
    Ok((row, viewer))
}

/// How `viewer_id` sees `row`, if at all.
pub fn viewer_of(row: &ReviewRow, viewer_id: Option<Uuid>, admin: bool) -> Option<Viewer> {
    if viewer_id == Some(row.author_id) {
        Some(Viewer::Author)
    } else if admin {
        Some(Viewer::Admin)
    } else if row.is_public() {
        Some(Viewer::Public)
    } else {
        None
    }
}

/// The reviews of `booking_id` the caller may see (their own always, the
/// other's once public; all of them for admins), oldest first.
pub async fn list_for_booking(
    r: &Reviews,
    booking_id: Uuid,
    viewer_id: Uuid,
    admin: bool,
) -> ReviewResult<Vec<(ReviewRow, Viewer)>> {
    let rows: Vec<ReviewRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reviews WHERE booking_id = $1 ORDER BY id"
    ))
    .bind(booking_id)
    .fetch_all(r.db())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| viewer_of(&row, Some(viewer_id), admin).map(|v| (row, v)))
        .collect())
}

/// A page of `user_id`'s public reviews, newest first (by id, a UUIDv7);
/// 404 for an unknown or erased account, as its profile is.
pub async fn list_public(
    r: &Reviews,
    user_id: Uuid,
    before: Option<Uuid>,
    fetch_limit: i64,
) -> ReviewResult<Vec<ReviewRow>> {
    let mut conn = r.db().acquire().await?;
    if !crate::accounts::is_active(&mut conn, user_id).await? {
        return Err(ReviewError::NotFound);
    }
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reviews
          WHERE target_id = $1 AND status = 'published' AND visible_at IS NOT NULL
            AND ($2::uuid IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3"
    ))
    .bind(user_id)
    .bind(before)
    .bind(fetch_limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

/// A page of the reviews in `status`, oldest first (the moderation queue).
pub async fn list_by_status(
    r: &Reviews,
    status: ReviewStatus,
    after: Option<Uuid>,
    fetch_limit: i64,
) -> ReviewResult<Vec<ReviewRow>> {
    let rows = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM reviews
          WHERE status = $1 AND ($2::uuid IS NULL OR id > $2)
          ORDER BY id LIMIT $3"
    ))
    .bind(status.as_str())
    .bind(after)
    .bind(fetch_limit)
    .fetch_all(r.db())
    .await?;
    Ok(rows)
}

/// `user_id`'s stored trust score, if the `trust` consumer computed one.
pub async fn trust_of(
    r: &Reviews,
    user_id: Uuid,
) -> ReviewResult<Option<(i16, serde_json::Value, DateTime<Utc>)>> {
    Ok(
        sqlx::query_as(
            "SELECT score, components, computed_at FROM trust_scores WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(r.db())
        .await?,
    )
}
