//! HTTP handlers of `/v1/listings` and `/v1/users/{id}/listings`.

use axum::{Extension, http::HeaderMap, response::Response};
use rentify_platform::{
    ApiResult, PlatformState,
    auth::{MaybeCaller, UserCaller},
    error::ErrorEnvelope,
    extract::{Json, Path, ValidQuery, parse_json},
    idempotency::IdempotencyKey,
    pagination::{Cursor, Page, PageParams},
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    fields::ListingInput,
    service::{self, OwnerAction, Retry},
    store,
    view::{ListingResponse, ListingView},
};
use crate::{Listings, model::ListingStatus};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(create_listing))
        .routes(routes!(get_listing, update_listing, archive_listing))
        .routes(routes!(publish_listing))
        .routes(routes!(pause_listing))
        .routes(routes!(resume_listing))
        .routes(routes!(list_user_listings))
}

fn parse_input(raw: &serde_json::Value) -> ApiResult<ListingInput> {
    let bytes = serde_json::to_vec(raw).map_err(rentify_platform::ApiError::internal)?;
    parse_json(&bytes)
}

/// Creates a `draft` listing. Drafts may be incomplete; `type` is required.
/// The caller's first listing gives them the `owner` role.
#[utoipa::path(
    post, path = "/v1/listings", tag = "listings",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    request_body = ListingInput,
    responses(
        (status = 201, description = "The new draft; `ETag` header", body = ListingView),
        (status = 400, description = "`validation_failed` naming each field (wrong-type fields, unknown or mismatched category, ranges)", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden` for API keys", body = ErrorEnvelope),
        (status = 409, description = "`idempotency_key_in_progress`", body = ErrorEnvelope),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorEnvelope),
    )
)]
pub async fn create_listing(
    Extension(listings): Extension<Listings>,
    caller: UserCaller,
    key: IdempotencyKey,
    Json(raw): Json<serde_json::Value>,
) -> ApiResult<Response> {
    let input = parse_input(&raw)?;
    let retry = Retry {
        key: &key,
        principal: caller.user_id,
        path: "/v1/listings".into(),
        body: raw,
    };
    Ok(service::create(&listings, caller.user_id, retry, input).await?)
}

/// A listing. `active` and `paused` listings are public; the others only
/// to their owner and admins (404 for anyone else). `ETag: "<version>"`.
#[utoipa::path(
    get, path = "/v1/listings/{id}", tag = "listings",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The listing; `ETag` header", body = ListingView),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
    )
)]
pub async fn get_listing(
    Extension(listings): Extension<Listings>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<ListingResponse> {
    let mut conn = listings.db().acquire().await?;
    let listing = service::visible(&mut conn, id, caller.as_ref()).await?;
    Ok(ListingResponse::ok(listing))
}

/// Changes the given fields (`null` clears or resets one). Owner only.
/// With `If-Match: "<version>"` the update applies only to that version
/// (412 otherwise); every update bumps the version. Editing does not change
/// the status: an active listing stays active.
#[utoipa::path(
    patch, path = "/v1/listings/{id}", tag = "listings",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "The `ETag` the edit is based on"),
    ),
    request_body = ListingInput,
    responses(
        (status = 200, description = "The updated listing; new `ETag`", body = ListingView),
        (status = 400, description = "`validation_failed`", body = ErrorEnvelope),
        (status = 404, description = "`not_found` (also another owner's listing)", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition` (archived) or `quantity_in_use`", body = ErrorEnvelope),
        (status = 412, description = "`precondition_failed`: `If-Match` is not the current ETag", body = ErrorEnvelope),
    )
)]
pub async fn update_listing(
    Extension(listings): Extension<Listings>,
    caller: UserCaller,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(raw): Json<serde_json::Value>,
) -> ApiResult<ListingResponse> {
    let input = parse_input(&raw)?;
    let listing = service::update(&listings, caller.user_id, id, &headers, input).await?;
    Ok(ListingResponse::ok(listing))
}

/// Archives the listing (soft delete, final). Upcoming bookings stay; no
/// new ones can be made. Answers the archived listing.
#[utoipa::path(
    delete, path = "/v1/listings/{id}", tag = "listings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The archived listing", body = ListingView),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`: already archived", body = ErrorEnvelope),
    )
)]
pub async fn archive_listing(
    Extension(listings): Extension<Listings>,
    caller: UserCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    // DELETE is idempotent by nature (a repeat answers 409); no key.
    let key = IdempotencyKey::default();
    owner_action(&listings, &caller, &key, id, OwnerAction::Archive, "").await
}

/// Publishes a `draft` (or an edited `rejected`) listing: `active` at once,
/// or `pending_review` for properties and for owners whose identity is not
/// verified.
#[utoipa::path(
    post, path = "/v1/listings/{id}/publish", tag = "listings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    responses(
        (status = 200, description = "The listing, `active` or `pending_review`", body = ListingView),
        (status = 400, description = "`listing_incomplete`, one detail per missing field", body = ErrorEnvelope),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition` with the current status in details", body = ErrorEnvelope),
    )
)]
pub async fn publish_listing(
    Extension(listings): Extension<Listings>,
    caller: UserCaller,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    owner_action(
        &listings,
        &caller,
        &key,
        id,
        OwnerAction::Publish,
        "/publish",
    )
    .await
}

/// Takes an `active` listing off the market for a while (`paused`).
#[utoipa::path(
    post, path = "/v1/listings/{id}/pause", tag = "listings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    responses(
        (status = 200, description = "The paused listing", body = ListingView),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`", body = ErrorEnvelope),
    )
)]
pub async fn pause_listing(
    Extension(listings): Extension<Listings>,
    caller: UserCaller,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    owner_action(&listings, &caller, &key, id, OwnerAction::Pause, "/pause").await
}

/// Puts a `paused` listing back on the market (`active`).
#[utoipa::path(
    post, path = "/v1/listings/{id}/resume", tag = "listings",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for retries")),
    responses(
        (status = 200, description = "The active listing", body = ListingView),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 409, description = "`invalid_transition`", body = ErrorEnvelope),
    )
)]
pub async fn resume_listing(
    Extension(listings): Extension<Listings>,
    caller: UserCaller,
    key: IdempotencyKey,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    owner_action(&listings, &caller, &key, id, OwnerAction::Resume, "/resume").await
}

#[derive(Debug, Deserialize, IntoParams, Validate)]
#[into_params(parameter_in = Query)]
pub struct StatusFilter {
    /// Only listings in this status.
    pub status: Option<ListingStatus>,
}

/// A user's listings, newest first. Others see only `active` ones; the
/// owner and admins see every status (filter with `status`).
#[utoipa::path(
    get, path = "/v1/users/{id}/listings", tag = "listings",
    params(("id" = Uuid, Path), StatusFilter, PageParams),
    responses(
        (status = 200, description = "A page of listings", body = Page<ListingView>),
        (status = 400, description = "`validation_failed` or `invalid_cursor`", body = ErrorEnvelope),
    )
)]
pub async fn list_user_listings(
    Extension(listings): Extension<Listings>,
    MaybeCaller(caller): MaybeCaller,
    Path(owner_id): Path<Uuid>,
    ValidQuery(filter): ValidQuery<StatusFilter>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> ApiResult<axum::Json<Page<ListingView>>> {
    let privileged = caller
        .as_ref()
        .is_some_and(|c| c.user_id == owner_id || c.is_admin());
    let statuses: Vec<&str> = ListingStatus::ALL
        .into_iter()
        .filter(|s| privileged || *s == ListingStatus::Active)
        .filter(|s| filter.status.is_none_or(|wanted| wanted == *s))
        .map(ListingStatus::as_str)
        .collect();
    let after: Option<Cursor<()>> = page.after()?;
    let mut conn = listings.db().acquire().await?;
    let rows = store::list_by_owner(
        &mut conn,
        owner_id,
        &statuses,
        after.map(|c| c.id),
        page.fetch_limit(),
    )
    .await?;
    let page = Page::from_rows(rows, &page, |l| Cursor::new((), l.id));
    Ok(axum::Json(page.map(ListingView::from)))
}

/// An owner's lifecycle action on listing `id` at `/v1/listings/{id}{suffix}`
/// (no body), replayed for retries under `key`.
async fn owner_action(
    listings: &Listings,
    caller: &UserCaller,
    key: &IdempotencyKey,
    id: Uuid,
    action: OwnerAction,
    suffix: &str,
) -> ApiResult<Response> {
    let retry = Retry {
        key,
        principal: caller.user_id,
        path: format!("/v1/listings/{id}{suffix}"),
        body: serde_json::Value::Null,
    };
    Ok(service::owner_transition(listings, caller.user_id, id, action, retry).await?)
}
