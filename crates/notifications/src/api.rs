//! `GET /v1/notifications` and `PATCH /v1/notifications/{id}/read`: the
//! caller's in-app notifications.

use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult,
    auth::UserCaller,
    error::ErrorEnvelope,
    extract::{Path, ValidQuery},
    pagination::{Cursor, Page, PageParams},
};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::{
    Notifications,
    model::{self, COLUMNS, Notification, NotificationRow},
};

/// `?unread=&limit=&cursor=` of `GET /v1/notifications`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams, validator::Validate)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true`: only the notifications not read yet.
    pub unread: Option<bool>,
    /// Page size, 1 to 50 (default 20).
    #[validate(range(min = 1, max = 50))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The caller's notifications, newest first.
#[utoipa::path(
    get, path = "/v1/notifications", tag = "notifications",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of notifications", body = Page<Notification>),
        (status = 400, description = "`validation_failed` (`limit`, `unread`) or `invalid_cursor`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: an API key", body = ErrorEnvelope),
    )
)]
pub async fn list_notifications(
    Extension(notifications): Extension<Notifications>,
    caller: UserCaller,
    ValidQuery(query): ValidQuery<ListQuery>,
) -> ApiResult<Json<Page<Notification>>> {
    let params = PageParams {
        limit: query.limit,
        cursor: query.cursor,
    };
    let after: Option<Cursor<DateTime<Utc>>> = params.after()?;
    let mut conn = notifications.db().acquire().await?;
    let rows: Vec<NotificationRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications
          WHERE user_id = $1 AND ($2::boolean IS NOT TRUE OR read_at IS NULL)
            AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
          ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(caller.user_id)
    .bind(query.unread)
    .bind(after.as_ref().map(|c| c.key))
    .bind(after.as_ref().map(|c| c.id))
    .bind(params.fetch_limit())
    .fetch_all(&mut *conn)
    .await?;
    let page = Page::from_rows(rows, &params, |row| Cursor::new(row.created_at, row.id));
    let has_more = page.has_more;
    let next_cursor = page.next_cursor;
    let data = model::with_deliveries(&mut conn, page.data).await?;
    Ok(Json(Page {
        object: "list",
        data,
        has_more,
        next_cursor,
    }))
}

/// Marks one of the caller's notifications read (again is a no-op: the
/// first `read_at` stays).
#[utoipa::path(
    patch, path = "/v1/notifications/{id}/read", tag = "notifications",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The notification, read", body = Notification),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: an API key", body = ErrorEnvelope),
        (status = 404, description = "`not_found`, also for another user's", body = ErrorEnvelope),
    )
)]
pub async fn read_notification(
    Extension(notifications): Extension<Notifications>,
    caller: UserCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Notification>> {
    let mut conn = notifications.db().acquire().await?;
    let updated = sqlx::query(
        "UPDATE notifications SET read_at = coalesce(read_at, now())
          WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(caller.user_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(ApiError::not_found());
    }
    model::find(&mut conn, caller.user_id, id)
        .await?
        .map(Json)
        .ok_or_else(ApiError::not_found)
}
