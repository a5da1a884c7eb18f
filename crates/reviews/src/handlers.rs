//! The reviews endpoints of the parties and the public.

use axum::{
    Extension, Json,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use rentify_bookings::Bookings;
use rentify_platform::{
    ApiResult,
    auth::{Caller, MaybeCaller, UserCaller},
    error::ErrorEnvelope,
    extract::{Path, ValidJson, ValidQuery},
    idempotency::IdempotencyKey,
    pagination::{Cursor, Page, PageParams},
};
use uuid::Uuid;

use crate::{
    Reviews,
    model::{NewReview, Review, ReviewPatch, ReviewResponse, Viewer},
    service,
};

/// Reviews the other party of a completed booking (renter ↔ owner). The
/// review stays sealed (only its author sees it) until the other party
/// reviews too or the review window closes; a review the moderation checks
/// flag (links, contact details, profanity, spam) is held as `pending` for
/// an admin. One review per author per booking.
#[utoipa::path(
    post, path = "/v1/bookings/{id}/reviews", tag = "reviews",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The booking"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries"),
    ),
    request_body = NewReview,
    responses(
        (status = 201, description = "The review, as its author sees it; `ETag` header", body = Review),
        (status = 400, description = "`validation_failed`: `rating` not 1–5, `comment` over 2000 characters, unknown field", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such booking, or not a party to it", body = ErrorEnvelope),
        (status = 409, description = "`booking_not_completed`, `review_window_closed` or `review_exists`", body = ErrorEnvelope),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorEnvelope),
    )
)]
pub async fn create_review(
    Extension(reviews): Extension<Reviews>,
    Extension(bookings): Extension<Bookings>,
    caller: UserCaller,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
    ValidJson(input): ValidJson<NewReview>,
) -> ApiResult<Response> {
    let booking = rentify_bookings::service::get(&bookings, &caller, id)
        .await
        .map_err(crate::error::ReviewError::from)?;
    Ok(service::create(&reviews, &booking, caller.user_id, &input, &key).await?)
}

/// The booking's reviews the caller may see: their own always (sealed or
/// held), the other party's once it is public. Parties and admins; 404 for
/// anyone else.
#[utoipa::path(
    get, path = "/v1/bookings/{id}/reviews", tag = "reviews",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The booking")),
    responses(
        (status = 200, description = "Up to two reviews, oldest first", body = Page<Review>),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such booking, or not a party to it", body = ErrorEnvelope),
    )
)]
pub async fn list_booking_reviews(
    Extension(reviews): Extension<Reviews>,
    Extension(bookings): Extension<Bookings>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Page<Review>>> {
    rentify_bookings::service::get(&bookings, &caller, id)
        .await
        .map_err(crate::error::ReviewError::from)?;
    let rows = service::list_for_booking(&reviews, id, caller.user_id, caller.is_admin()).await?;
    Ok(Json(Page {
        object: "list",
        data: rows.iter().map(|(row, viewer)| row.view(*viewer)).collect(),
        has_more: false,
        next_cursor: None,
    }))
}

/// One review: for its author and admins always, for anyone else once it
/// is public. `ETag: "<version>"`.
#[utoipa::path(
    get, path = "/v1/reviews/{id}", tag = "reviews",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The review; `ETag` header", body = Review),
        (status = 404, description = "No such review, or not visible to the caller", body = ErrorEnvelope),
    )
)]
pub async fn get_review(
    Extension(reviews): Extension<Reviews>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<ReviewResponse> {
    let (row, viewer) = service::get(
        &reviews,
        caller.as_ref().map(|c| c.user_id),
        caller.as_ref().is_some_and(|c| c.is_admin()),
        id,
    )
    .await?;
    Ok(ReviewResponse {
        status: StatusCode::OK,
        review: row.view(viewer),
    })
}

/// The author changes their review's rating or comment (`null` removes the
/// comment) within 48 hours of writing it and while it is still sealed;
/// the checks run again. With `If-Match: "<version>"` the edit applies only
/// to that version (412 otherwise).
#[utoipa::path(
    patch, path = "/v1/reviews/{id}", tag = "reviews",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the edit is based on"),
    ),
    request_body = ReviewPatch,
    responses(
        (status = 200, description = "The updated review; new `ETag`", body = Review),
        (status = 400, description = "`validation_failed`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such review, or not the caller's", body = ErrorEnvelope),
        (status = 409, description = "`review_locked`: over 48 hours old, revealed, or rejected", body = ErrorEnvelope),
        (status = 412, description = "`precondition_failed`: `If-Match` is not the current ETag", body = ErrorEnvelope),
    )
)]
pub async fn update_review(
    Extension(reviews): Extension<Reviews>,
    caller: UserCaller,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    ValidJson(patch): ValidJson<ReviewPatch>,
) -> ApiResult<ReviewResponse> {
    let row = service::update(&reviews, caller.user_id, id, &headers, &patch).await?;
    Ok(ReviewResponse {
        status: StatusCode::OK,
        review: row.view(Viewer::Author),
    })
}

/// A user's public reviews (published, and no longer sealed), newest
/// first. Public, like the profile.
#[utoipa::path(
    get, path = "/v1/users/{id}/reviews", tag = "reviews",
    params(("id" = Uuid, Path), PageParams),
    responses(
        (status = 200, description = "A page of reviews about the user", body = Page<Review>),
        (status = 400, description = "`validation_failed` or `invalid_cursor`", body = ErrorEnvelope),
        (status = 404, description = "No such user", body = ErrorEnvelope),
    )
)]
pub async fn list_user_reviews(
    Extension(reviews): Extension<Reviews>,
    Path(id): Path<Uuid>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<Review>>> {
    let before: Option<Cursor<()>> = page.after()?;
    let rows = service::list_public(&reviews, id, before.map(|c| c.id), page.fetch_limit()).await?;
    let page = Page::from_rows(rows, &page, |r| Cursor::new((), r.id));
    Ok(Json(page.map(|row| row.view(Viewer::Public))))
}
