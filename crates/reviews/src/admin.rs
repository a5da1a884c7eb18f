//! Moderation of held reviews and the users' trust scores, for admins.

use axum::{Extension, Json, response::Response};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiResult,
    auth::AdminCaller,
    error::ErrorEnvelope,
    extract::{Path, ValidJson, ValidQuery},
    idempotency::IdempotencyKey,
    pagination::{Cursor, Page, PageParams},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Reviews,
    error::ReviewError,
    model::{Rejection, Review, ReviewStatus, Viewer},
    service::{self, Decision},
    trust::Components,
};

/// `?status=` of the moderation list.
#[derive(Debug, Deserialize, IntoParams, Validate)]
#[into_params(parameter_in = Query)]
pub struct ModerationQuery {
    /// Default `pending`: the moderation queue.
    pub status: Option<ReviewStatus>,
}

/// Reviews in a status (default `pending`, the queue), oldest first, with
/// what the moderation checks found.
#[utoipa::path(
    get, path = "/v1/admin/reviews", tag = "admin",
    security(("bearer" = [])),
    params(ModerationQuery, PageParams),
    responses(
        (status = 200, description = "A page of reviews", body = Page<Review>),
        (status = 400, description = "`validation_failed` or `invalid_cursor`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorEnvelope),
    )
)]
pub async fn list_reviews_for_moderation(
    Extension(reviews): Extension<Reviews>,
    _admin: AdminCaller,
    ValidQuery(query): ValidQuery<ModerationQuery>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<Review>>> {
    let status = query.status.unwrap_or(ReviewStatus::Pending);
    let after: Option<Cursor<()>> = page.after()?;
    let rows =
        service::list_by_status(&reviews, status, after.map(|c| c.id), page.fetch_limit()).await?;
    let page = Page::from_rows(rows, &page, |r| Cursor::new((), r.id));
    Ok(Json(page.map(|row| row.view(Viewer::Admin))))
}

/// Publishes a held review: it shows (and counts) once the double blind
/// lifts, at once if it already has.
#[utoipa::path(
    post, path = "/v1/admin/reviews/{id}/approve", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    responses(
        (status = 200, description = "The published review", body = Review),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`", body = ErrorEnvelope),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: not `pending`", body = ErrorEnvelope),
    )
)]
pub async fn approve_review(
    Extension(reviews): Extension<Reviews>,
    AdminCaller(admin): AdminCaller,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    Ok(service::moderate(&reviews, admin.user_id, id, Decision::Approve, &key).await?)
}

/// Rejects a held review with a reason shown to its author; it is never
/// shown nor counted, and cannot be edited any more.
#[utoipa::path(
    post, path = "/v1/admin/reviews/{id}/reject", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    request_body = Rejection,
    responses(
        (status = 200, description = "The rejected review", body = Review),
        (status = 400, description = "`validation_failed`: `reason` missing or empty", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`", body = ErrorEnvelope),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: not `pending`", body = ErrorEnvelope),
    )
)]
pub async fn reject_review(
    Extension(reviews): Extension<Reviews>,
    AdminCaller(admin): AdminCaller,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
    ValidJson(input): ValidJson<Rejection>,
) -> ApiResult<Response> {
    let reason = input.reason.trim();
    Ok(service::moderate(
        &reviews,
        admin.user_id,
        id,
        Decision::Reject { reason },
        &key,
    )
    .await?)
}

/// A user's trust score.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TrustScoreView {
    /// Always `trust_score`.
    #[schema(example = "trust_score")]
    pub object: &'static str,
    pub user_id: Uuid,
    /// 0 to 100.
    pub score: i16,
    /// What each signal contributed (they add up to the score).
    pub components: Components,
    pub computed_at: DateTime<Utc>,
}

/// A user's trust score and what it is made of: identity and contact
/// verification, reviews received, response time, cancellation and dispute
/// rates, experience. Recomputed when a signal changes.
#[utoipa::path(
    get, path = "/v1/admin/users/{id}/trust", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The score", body = TrustScoreView),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorEnvelope),
        (status = 404, description = "No score computed for this user (yet)", body = ErrorEnvelope),
    )
)]
pub async fn get_user_trust(
    Extension(reviews): Extension<Reviews>,
    _admin: AdminCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<TrustScoreView>> {
    let (score, components, computed_at) = service::trust_of(&reviews, id)
        .await?
        .ok_or(ReviewError::NotFound)?;
    let components: Components =
        serde_json::from_value(components).map_err(|e| ReviewError::Internal(e.into()))?;
    Ok(Json(TrustScoreView {
        object: "trust_score",
        user_id: id,
        score,
        components,
        computed_at,
    }))
}
