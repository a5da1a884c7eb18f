//! Admin review of listings that need it (properties, owners without a
//! verified identity): the queue, approve and reject. The reviewer and time
//! are recorded on the listing and in the event.

use axum::{Extension, response::Response};
use rentify_platform::{
    ApiResult, PlatformState,
    auth::AdminCaller,
    error::ErrorEnvelope,
    extract::{Path, ValidJson, ValidQuery},
    idempotency::IdempotencyKey,
    pagination::{Cursor, Page, PageParams},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Listings,
    listing::{
        lifecycle::Action,
        service::{self, Retry},
        store,
        view::ListingView,
    },
    model::ListingStatus,
};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(list_listings_for_review))
        .routes(routes!(approve_listing))
        .routes(routes!(reject_listing))
}

#[derive(Debug, Deserialize, IntoParams, Validate)]
#[into_params(parameter_in = Query)]
pub struct ReviewQueueQuery {
    /// Default `pending_review`.
    pub status: Option<ListingStatus>,
}

/// Listings in a status (default `pending_review`), oldest first.
#[utoipa::path(
    get, path = "/v1/admin/listings", tag = "admin",
    security(("bearer" = [])),
    params(ReviewQueueQuery, PageParams),
    responses(
        (status = 200, description = "A page of listings", body = Page<ListingView>),
        (status = 400, description = "`validation_failed` or `invalid_cursor`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorEnvelope),
    )
)]
pub async fn list_listings_for_review(
    Extension(listings): Extension<Listings>,
    _admin: AdminCaller,
    ValidQuery(query): ValidQuery<ReviewQueueQuery>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> ApiResult<axum::Json<Page<ListingView>>> {
    let status = query.status.unwrap_or(ListingStatus::PendingReview);
    let after: Option<Cursor<()>> = page.after()?;
    let mut conn = listings.db().acquire().await?;
    let rows =
        store::list_by_status(&mut conn, status, after.map(|c| c.id), page.fetch_limit()).await?;
    let page = Page::from_rows(rows, &page, |l| Cursor::new((), l.id));
    Ok(axum::Json(page.map(ListingView::from)))
}

/// Approves a listing in review: it becomes `active`.
#[utoipa::path(
    post, path = "/v1/admin/listings/{id}/approve", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    responses(
        (status = 200, description = "The active listing", body = ListingView),
        (status = 403, description = "`forbidden`", body = ErrorEnvelope),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: not `pending_review`", body = ErrorEnvelope),
    )
)]
pub async fn approve_listing(
    Extension(listings): Extension<Listings>,
    AdminCaller(admin): AdminCaller,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let retry = Retry {
        key: &key,
        principal: admin.user_id,
        path: format!("/v1/admin/listings/{id}/approve"),
        body: serde_json::Value::Null,
    };
    Ok(service::review(&listings, admin.user_id, id, Action::Approve, None, retry).await?)
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// Shown to the owner; 1 to 1000 characters.
    #[validate(custom(function = "not_blank"), length(max = 1000))]
    pub reason: String,
}

fn not_blank(value: &str) -> Result<(), validator::ValidationError> {
    if value.trim().is_empty() {
        let mut error = validator::ValidationError::new("required");
        error.message = Some("must not be empty".into());
        Err(error)
    } else {
        Ok(())
    }
}

/// Rejects a listing in review with a reason; the owner may edit it and
/// publish again.
#[utoipa::path(
    post, path = "/v1/admin/listings/{id}/reject", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    request_body = Rejection,
    responses(
        (status = 200, description = "The rejected listing", body = ListingView),
        (status = 400, description = "`validation_failed`: `reason` missing or empty", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`", body = ErrorEnvelope),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: not `pending_review`", body = ErrorEnvelope),
    )
)]
pub async fn reject_listing(
    Extension(listings): Extension<Listings>,
    AdminCaller(admin): AdminCaller,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
    ValidJson(input): ValidJson<Rejection>,
) -> ApiResult<Response> {
    let reason = input.reason.trim();
    let retry = Retry {
        key: &key,
        principal: admin.user_id,
        path: format!("/v1/admin/listings/{id}/reject"),
        body: serde_json::json!({ "reason": reason }),
    };
    Ok(service::review(
        &listings,
        admin.user_id,
        id,
        Action::Reject,
        Some(reason),
        retry,
    )
    .await?)
}
