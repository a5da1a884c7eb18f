//! A reference module mounted only in tests: the smallest resource that uses
//! every platform piece the way real modules do (validated JSON, idempotent
//! create with an outbox event in the same transaction, cursor pagination,
//! 404 for unknown ids), plus routes that panic or sleep to test the stack.

use std::time::Duration;

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::Response,
    routing::get,
};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    extract::{Path, ValidJson, ValidQuery},
    idempotency::{self, Begin, IdempotencyKey, Scope},
    ids::new_id,
    outbox::{self, NewEvent},
    pagination::{Cursor, Page, PageParams},
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;
use validator::Validate;

pub async fn install(db: &PgPool) {
    sqlx::query(
        "CREATE TABLE widgets (id uuid PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(db)
    .await
    .unwrap();
}

pub fn routes() -> Router<PlatformState> {
    Router::new()
        .route("/v1/widgets", get(list_widgets).post(create_widget))
        .route("/v1/widgets/{id}", get(get_widget))
        .route("/v1/test/panic", get(panic_handler))
        .route("/v1/test/sleep/{ms}", get(sleep_handler))
}

#[derive(Debug, Serialize, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct NewWidget {
    #[validate(length(min = 1, max = 20))]
    pub name: String,
    #[validate(range(min = 1, max = 10))]
    pub size: Option<u32>,
    /// Test hook: hold the transaction open this long.
    #[serde(default)]
    pub hold_ms: u64,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Widget {
    pub id: Uuid,
    #[sqlx(skip)]
    pub object: &'static str,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

async fn create_widget(
    State(state): State<PlatformState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    key: IdempotencyKey,
    ValidJson(input): ValidJson<NewWidget>,
) -> ApiResult<Response> {
    let principal = headers
        .get("x-test-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_string();
    let body = serde_json::to_value(&input).map_err(ApiError::internal)?;
    let mut tx = state.db.begin().await?;
    let scope = Scope {
        principal: &principal,
        method: method.as_str(),
        path: uri.path(),
        body: &body,
    };
    let pending =
        match idempotency::begin(&mut tx, &key, scope, state.config.idempotency_ttl_hours).await? {
            Begin::Replay(response) => return Ok(response),
            Begin::Proceed(pending) => pending,
        };
    let mut widget: Widget = sqlx::query_as(
        "INSERT INTO widgets (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
    )
    .bind(new_id())
    .bind(&input.name)
    .fetch_one(&mut *tx)
    .await?;
    widget.object = "widget";
    outbox::record(
        &mut tx,
        NewEvent {
            event_type: "widget.created",
            aggregate_type: "widget",
            aggregate_id: widget.id.to_string(),
            payload: &widget,
        },
    )
    .await?;
    if input.hold_ms > 0 {
        tokio::time::sleep(Duration::from_millis(input.hold_ms)).await;
    }
    let response = pending
        .complete(&mut tx, StatusCode::CREATED, &widget)
        .await?;
    tx.commit().await?;
    Ok(response)
}

async fn list_widgets(
    State(state): State<PlatformState>,
    ValidQuery(params): ValidQuery<PageParams>,
) -> ApiResult<axum::Json<Page<Widget>>> {
    let after = params.after::<DateTime<Utc>>()?;
    let rows: Vec<Widget> = sqlx::query_as(
        "SELECT id, name, created_at FROM widgets
          WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2))
          ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(after.as_ref().map(|c| c.key))
    .bind(after.as_ref().map(|c| c.id))
    .bind(params.fetch_limit())
    .fetch_all(&state.db)
    .await?;
    let page = Page::from_rows(rows, &params, |w| Cursor::new(w.created_at, w.id));
    Ok(axum::Json(page.map(|mut w| {
        w.object = "widget";
        w
    })))
}

async fn get_widget(
    State(state): State<PlatformState>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Widget>> {
    let widget: Option<Widget> =
        sqlx::query_as("SELECT id, name, created_at FROM widgets WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
    let mut widget = widget.ok_or_else(ApiError::not_found)?;
    widget.object = "widget";
    Ok(axum::Json(widget))
}

async fn panic_handler() -> &'static str {
    panic!("secret-internal-detail")
}

async fn sleep_handler(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slept"
}
