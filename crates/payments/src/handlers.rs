//! Every payments route, and the operators' payment actions.

use axum::{Extension, Json};
use rentify_platform::{
    ApiError, ApiResult, PlatformState, auth::AdminCaller, error::ErrorEnvelope, extract::Path,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{Payments, error::PaymentError, intents};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .merge(crate::methods::routes())
        .merge(crate::webhooks::routes())
        .merge(crate::payouts::routes())
        .merge(crate::wallet::routes())
        .merge(crate::reconcile::routes())
        .routes(routes!(capture_booking_payment))
}

/// A booking's payment at the gateway, as operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingPayment {
    pub id: Uuid,
    #[schema(example = "payment")]
    pub object: &'static str,
    pub booking_id: Option<Uuid>,
    /// `authorizing`, `authorized`, `captured`, `voiding`, `voided`,
    /// `failed` or `expired`.
    pub status: String,
    pub amount: i64,
    pub deposit: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub currency: String,
    pub failure_code: Option<String>,
}

impl From<intents::Intent> for BookingPayment {
    fn from(intent: intents::Intent) -> Self {
        Self {
            id: intent.id,
            object: "payment",
            booking_id: intent.booking_id,
            status: intent.status,
            amount: intent.amount,
            deposit: intent.deposit,
            amount_captured: intent.amount_captured,
            amount_refunded: intent.amount_refunded,
            currency: intent.currency,
            failure_code: intent.failure_code,
        }
    }
}

/// Captures a booking's authorized payment now (support's button when the
/// automatic capture at the start is waiting out a gateway outage). Safe to
/// repeat and to race: the gateway captures once, the ledger posts once.
#[utoipa::path(
    post, path = "/v1/admin/bookings/{id}/capture", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Captured (now or before)", body = BookingPayment),
        (status = 401, description = "`unauthenticated`", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such booking, or nothing to pay", body = ErrorEnvelope),
        (status = 409, description = "`invalid_payment_state` (not authorized: declined, voided…)", body = ErrorEnvelope),
        (status = 503, description = "`payment_provider_unavailable`", body = ErrorEnvelope),
    )
)]
pub async fn capture_booking_payment(
    Extension(payments): Extension<Payments>,
    _admin: AdminCaller,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<BookingPayment>> {
    let intent = intents::of_booking(&mut *payments.db().acquire().await?, id)
        .await
        .map_err(ApiError::from)?
        .ok_or(PaymentError::NotFound)?;
    let captured = intents::capture(&payments, intent.id).await?;
    Ok(Json(captured.into()))
}
