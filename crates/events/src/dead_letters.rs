//! Events a consumer gave up on: listed for operators and replayed on
//! demand (the replay goes through the retry lane with a fresh budget of
//! attempts, in whichever mode the consumers run).

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::AdminCaller,
    error::ErrorEnvelope,
    extract::{Path, ValidQuery},
    pagination::{Cursor, Page, PageParams},
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letter))
}

/// An event a consumer failed on `attempts` times.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: Uuid,
    #[schema(example = "dead_letter")]
    #[sqlx(skip)]
    pub object: &'static str,
    /// The consumer that gave up.
    #[schema(example = "notifications")]
    pub consumer: String,
    pub event_id: Uuid,
    #[schema(example = "booking.approved")]
    pub event_type: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The last attempt's error.
    pub error: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// When an operator replayed it; `null` while it waits.
    pub replayed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, consumer, event_id, event_type, payload, error, attempts, created_at, replayed_at";

/// `?consumer=&status=&limit=&cursor=` of the dead-letter list.
#[derive(Clone, Debug, Default, Deserialize, IntoParams, validator::Validate)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Page size, 1 to 50 (default 20).
    #[validate(range(min = 1, max = 50))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this consumer's.
    pub consumer: Option<String>,
    /// `open` (default: not replayed), `replayed` or `all`.
    pub status: Option<String>,
}

/// Dead letters, newest first.
#[utoipa::path(
    get, path = "/v1/admin/dead-letters", tag = "admin",
    security(("bearer" = [])),
    params(DeadLetterParams),
    responses(
        (status = 200, description = "A page of dead letters", body = Page<DeadLetter>),
        (status = 400, description = "`validation_failed`, `invalid_cursor`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Admins only", body = ErrorEnvelope),
    )
)]
pub async fn list_dead_letters(
    State(state): State<PlatformState>,
    _admin: AdminCaller,
    ValidQuery(params): ValidQuery<DeadLetterParams>,
) -> ApiResult<Json<Page<DeadLetter>>> {
    let status = params.status.as_deref().unwrap_or("open");
    if !matches!(status, "open" | "replayed" | "all") {
        return Err(ApiError::invalid_field(
            "status",
            "enum",
            "one of open, replayed, all",
        ));
    }
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let after = page.after::<DateTime<Utc>>()?;
    let rows: Vec<DeadLetter> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dead_letters
          WHERE ($1::text IS NULL OR consumer = $1)
            AND ($2 = 'all' OR ($2 = 'open') = (replayed_at IS NULL))
            AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
          ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(params.consumer.as_deref())
    .bind(status)
    .bind(after.as_ref().map(|c| c.key))
    .bind(after.as_ref().map(|c| c.id))
    .bind(page.fetch_limit())
    .fetch_all(&state.db)
    .await
    .map_err(ApiError::internal)?;
    let page = Page::from_rows(rows, &page, |d| Cursor::new(d.created_at, d.id));
    Ok(Json(page.map(|d| DeadLetter {
        object: "dead_letter",
        ..d
    })))
}

/// Replays a dead letter: its consumer gets the event again, with a fresh
/// budget of attempts. If it fails again it comes back as a new dead letter.
#[utoipa::path(
    post, path = "/v1/admin/dead-letters/{id}/replay", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 202, description = "Queued for its consumer", body = DeadLetter),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Admins only", body = ErrorEnvelope),
        (status = 404, description = "No such dead letter", body = ErrorEnvelope),
        (status = 409, description = "`already_replayed`, or `event_gone` (deleted by retention)", body = ErrorEnvelope),
    )
)]
pub async fn replay_dead_letter(
    State(state): State<PlatformState>,
    _admin: AdminCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, Json<DeadLetter>)> {
    let replayed = replay(&state.db, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeadLetter {
            object: "dead_letter",
            ..replayed
        }),
    ))
}

/// Marks dead letter `id` replayed and queues its event for its consumer
/// now, with no failures counted.
pub async fn replay(pool: &PgPool, id: Uuid) -> Result<DeadLetter, ApiError> {
    let mut tx = pool.begin().await.map_err(ApiError::internal)?;
    let letter: Option<DeadLetter> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    let letter = letter.ok_or_else(ApiError::not_found)?;
    if letter.replayed_at.is_some() {
        return Err(ApiError::conflict(
            "already_replayed",
            "this dead letter was already replayed",
        ));
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE id = $1)")
        .bind(letter.event_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(ApiError::internal)?;
    if !exists {
        return Err(ApiError::conflict(
            "event_gone",
            "the event was deleted by the retention policy",
        ));
    }
    sqlx::query(
        "INSERT INTO event_retries (consumer, event_id, attempts, next_attempt_at, last_error)
         VALUES ($1, $2, 0, now(), 'replayed by an operator')
         ON CONFLICT (consumer, event_id) DO UPDATE SET attempts = 0, next_attempt_at = now()",
    )
    .bind(&letter.consumer)
    .bind(letter.event_id)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    let replayed: DeadLetter = sqlx::query_as(&format!(
        "UPDATE dead_letters SET replayed_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(dead_letter.id = %id, consumer = %replayed.consumer, event.id = %replayed.event_id, "dead letter replayed");
    Ok(replayed)
}
