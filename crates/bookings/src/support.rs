//! Support cases. A dispute pauses the owner's payout (the payments task of
//! the transition) and opens a case here for an admin: the reaction of the
//! `support_cases` consumer to `booking.disputed`. A booking's resolution
//! (`booking.resolved`) closes its open cases.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use rentify_events::{Consumer, Context, Event, Handler, Priority};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::AdminCaller,
    error::ErrorEnvelope,
    extract::ValidQuery,
    ids::new_id,
    pagination::{Cursor, Page, PageParams},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new().routes(routes!(list_support_cases))
}

/// The consumer opening and closing cases.
pub fn consumer() -> Consumer {
    Consumer::new("support_cases", SupportCases)
        .on("booking.disputed")
        .on("booking.resolved")
        .priority(Priority::Critical)
}

struct SupportCases;

#[async_trait::async_trait]
impl Handler for SupportCases {
    async fn handle(&self, cx: &mut Context<'_>, event: &Event) -> anyhow::Result<()> {
        let booking_id = event
            .uuid("booking_id")
            .ok_or_else(|| anyhow::anyhow!("{} without a booking_id", event.event_type))?;
        match event.event_type.as_str() {
            "booking.disputed" => {
                sqlx::query(
                    "INSERT INTO support_cases (id, booking_id, event_id, kind, opened_by, reason)
                     VALUES ($1, $2, $3, 'dispute', $4, $5) ON CONFLICT (event_id) DO NOTHING",
                )
                .bind(new_id())
                .bind(booking_id)
                .bind(event.id)
                .bind(event.uuid("actor_id"))
                .bind(event.str("reason"))
                .execute(&mut *cx.tx)
                .await?;
            }
            _ => {
                sqlx::query(
                    "UPDATE support_cases SET status = 'closed', closed_at = now()
                     WHERE booking_id = $1 AND status = 'open'",
                )
                .bind(booking_id)
                .execute(&mut *cx.tx)
                .await?;
            }
        }
        Ok(())
    }
}

/// A case for the support team.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SupportCase {
    pub id: Uuid,
    #[schema(example = "support_case")]
    #[sqlx(skip)]
    pub object: &'static str,
    pub booking_id: Uuid,
    #[schema(example = "dispute")]
    pub kind: String,
    /// `open` or `closed`.
    pub status: String,
    /// Who disputed.
    pub opened_by: Option<Uuid>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// `?status=&booking_id=&limit=&cursor=` of the support-case list.
#[derive(Clone, Debug, Default, Deserialize, IntoParams, validator::Validate)]
#[into_params(parameter_in = Query)]
pub struct SupportCaseParams {
    /// Page size, 1 to 50 (default 20).
    #[validate(range(min = 1, max = 50))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// `open` or `closed`; both when absent.
    pub status: Option<String>,
    pub booking_id: Option<Uuid>,
}

/// Support cases, newest first.
#[utoipa::path(
    get, path = "/v1/admin/support-cases", tag = "admin",
    security(("bearer" = [])),
    params(SupportCaseParams),
    responses(
        (status = 200, description = "A page of support cases", body = Page<SupportCase>),
        (status = 400, description = "`validation_failed`, `invalid_cursor`", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Admins only", body = ErrorEnvelope),
    )
)]
pub async fn list_support_cases(
    State(state): State<PlatformState>,
    _admin: AdminCaller,
    ValidQuery(params): ValidQuery<SupportCaseParams>,
) -> ApiResult<Json<Page<SupportCase>>> {
    if let Some(status) = params.status.as_deref()
        && !matches!(status, "open" | "closed")
    {
        return Err(ApiError::invalid_field(
            "status",
            "enum",
            "one of open, closed",
        ));
    }
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let after = page.after::<DateTime<Utc>>()?;
    let rows: Vec<SupportCase> = sqlx::query_as(
        "SELECT id, booking_id, kind, status, opened_by, reason, created_at, closed_at
           FROM support_cases
          WHERE ($1::text IS NULL OR status = $1)
            AND ($2::uuid IS NULL OR booking_id = $2)
            AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
          ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(params.status.as_deref())
    .bind(params.booking_id)
    .bind(after.as_ref().map(|c| c.key))
    .bind(after.as_ref().map(|c| c.id))
    .bind(page.fetch_limit())
    .fetch_all(&state.db)
    .await
    .map_err(ApiError::internal)?;
    let page = Page::from_rows(rows, &page, |c| Cursor::new(c.created_at, c.id));
    Ok(Json(page.map(|c| SupportCase {
        object: "support_case",
        ..c
    })))
}
