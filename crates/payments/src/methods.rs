//! Payment methods: cards by token only (PCI: a raw card number never
//! reaches Rentify; the client tokenizes with the processor and sends the
//! token). The first card becomes the default one bookings charge.

use axum::{Extension, Json, http::StatusCode};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::UserCaller,
    error::ErrorEnvelope,
    extract::{Json as JsonBody, Path},
    ids::new_id,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{Payments, error::PaymentError, gateway::PaymentGateway};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(add_method, list_methods))
        .routes(routes!(delete_method))
}

/// `POST /v1/payments/methods`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMethod {
    /// The processor's token from client-side tokenization (sandbox:
    /// `tok_visa`, `tok_mastercard`, `tok_chargeDeclined`,
    /// `tok_insufficientFunds`).
    #[schema(example = "tok_visa")]
    pub token: String,
    /// Make it the default method (the first one always is).
    #[serde(default)]
    pub default: bool,
}

/// A stored card: what may be shown, never the number.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PaymentMethod {
    pub id: Uuid,
    #[schema(example = "payment_method")]
    #[sqlx(skip)]
    pub object: &'static str,
    #[schema(example = "visa")]
    pub brand: String,
    #[schema(example = "4242")]
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodList {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<PaymentMethod>,
}

const SELECT: &str =
    "SELECT id, brand, last4::text AS last4, exp_month, exp_year, is_default, created_at
                        FROM payment_methods";

/// Stores a card from a processor token. A raw card number is refused
/// (400), as is an unknown token.
#[utoipa::path(
    post, path = "/v1/payments/methods", tag = "payments",
    security(("bearer" = [])),
    request_body = NewMethod,
    responses(
        (status = 201, description = "Stored", body = PaymentMethod),
        (status = 400, description = "`validation_failed`, `payment_refused` (unknown token, raw card number)", body = ErrorEnvelope),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 503, description = "`payment_provider_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn add_method(
    Extension(payments): Extension<Payments>,
    caller: UserCaller,
    JsonBody(input): JsonBody<NewMethod>,
) -> ApiResult<(StatusCode, Json<PaymentMethod>)> {
    let token = input.token.trim();
    if token.is_empty() || token.len() > 200 {
        return Err(ApiError::invalid_field(
            "token",
            "length",
            "1 to 200 characters",
        ));
    }
    let card = payments
        .gateway()
        .create_method(token)
        .await
        .map_err(PaymentError::from)?;
    let mut tx = payments.db().begin().await?;
    // Serialize a user's method changes, so "first is default" holds.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7412))")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    let has_default: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_methods
                         WHERE user_id = $1 AND is_default AND deleted_at IS NULL)",
    )
    .bind(caller.user_id)
    .fetch_one(&mut *tx)
    .await?;
    let make_default = input.default || !has_default;
    if make_default {
        sqlx::query(
            "UPDATE payment_methods SET is_default = false
              WHERE user_id = $1 AND is_default AND deleted_at IS NULL",
        )
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    }
    let id = new_id();
    let mut method: PaymentMethod = sqlx::query_as(
        "INSERT INTO payment_methods (id, user_id, provider_method_id, brand, last4,
                                      exp_month, exp_year, is_default)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, brand, last4::text AS last4, exp_month, exp_year, is_default, created_at",
    )
    .bind(id)
    .bind(caller.user_id)
    .bind(&card.provider_method_id)
    .bind(&card.brand)
    .bind(&card.last4)
    .bind(card.exp_month)
    .bind(card.exp_year)
    .bind(make_default)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    method.object = "payment_method";
    Ok((StatusCode::CREATED, Json(method)))
}

/// The caller's cards, default first.
#[utoipa::path(
    get, path = "/v1/payments/methods", tag = "payments",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's cards", body = PaymentMethodList),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
    )
)]
pub async fn list_methods(
    Extension(payments): Extension<Payments>,
    caller: UserCaller,
) -> ApiResult<Json<PaymentMethodList>> {
    let mut data: Vec<PaymentMethod> = sqlx::query_as(&format!(
        "{SELECT} WHERE user_id = $1 AND deleted_at IS NULL
          ORDER BY is_default DESC, created_at DESC LIMIT 100"
    ))
    .bind(caller.user_id)
    .fetch_all(payments.db())
    .await?;
    for method in &mut data {
        method.object = "payment_method";
    }
    Ok(Json(PaymentMethodList {
        object: "list",
        data,
    }))
}

/// Removes a card. Bookings already paid with it keep their payment; if it
/// was the default, the newest remaining card becomes the default.
#[utoipa::path(
    delete, path = "/v1/payments/methods/{id}", tag = "payments",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 404, description = "No such card of yours", body = ErrorEnvelope),
    )
)]
pub async fn delete_method(
    Extension(payments): Extension<Payments>,
    caller: UserCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = payments.db().begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7412))")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    let was_default: Option<bool> = sqlx::query_scalar(
        "UPDATE payment_methods SET deleted_at = now(), is_default = false
          WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL
         RETURNING (SELECT is_default FROM payment_methods WHERE id = $1)",
    )
    .bind(id)
    .bind(caller.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(was_default) = was_default else {
        return Err(ApiError::not_found());
    };
    if was_default {
        sqlx::query(
            "UPDATE payment_methods SET is_default = true
              WHERE id = (SELECT id FROM payment_methods
                           WHERE user_id = $1 AND deleted_at IS NULL
                           ORDER BY created_at DESC LIMIT 1)",
        )
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
