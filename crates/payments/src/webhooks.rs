//! `POST /v1/webhooks/payments`: the gateway's signed, asynchronous reports.
//!
//! Webhooks arrive late, twice, or out of order, and race the answers of
//! the calls they report on. Safety does not rest on the event-id table
//! (`payment_webhook_events`, which only spares repeated work and keeps an
//! audit): every effect is applied under the intent's (or payout's) row lock
//! and only from the status it expects, so a second report of the same fact
//! finds nothing to do and a stale one (`authorized` after `captured`)
//! cannot move anything backwards.

use axum::{
    Extension, Json,
    body::Bytes,
    http::{HeaderMap, StatusCode},
};
use chrono::Utc;
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    error::ErrorEnvelope,
    extract::parse_json,
    webhook_signature::{self, SignatureError, verify_signature},
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Payments,
    error::PaymentResult,
    gateway::WebhookEvent,
    intents::{self, Intent},
};

pub const SIGNATURE_HEADER: &str = "rentify-signature";

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new().routes(routes!(payments_webhook))
}

/// The acknowledgement of a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentWebhookReceipt {
    pub received: bool,
    /// The event id was processed before; nothing changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// `applied`, or `ignored` (already applied through another path, about
    /// nothing we know, or a type we do not act on).
    pub outcome: &'static str,
}

/// The payment gateway's report of an intent or payout. Signed with
/// `Rentify-Signature`; no bearer token.
#[utoipa::path(
    post, path = "/v1/webhooks/payments", tag = "webhooks",
    params(
        ("Rentify-Signature" = String, Header,
         description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" under PAYMENTS_WEBHOOK_SECRET>`; 5 minutes tolerance"),
    ),
    request_body = WebhookEvent,
    responses(
        (status = 200, description = "Applied, or acknowledged as a duplicate or ignored", body = PaymentWebhookReceipt),
        (status = 400, description = "`invalid_signature`, `invalid_json`", body = ErrorEnvelope),
        (status = 503, description = "Not applied now (the database is unavailable); the gateway retries", body = ErrorEnvelope),
    )
)]
pub async fn payments_webhook(
    Extension(payments): Extension<Payments>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PaymentWebhookReceipt>)> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .map(|v| v.to_str().map_err(|_| SignatureError::Malformed))
        .transpose();
    let checked = header.and_then(|header| {
        verify_signature(
            header,
            &body,
            payments.webhook_secret(),
            Utc::now().timestamp(),
            webhook_signature::TOLERANCE_SECS,
        )
    });
    if let Err(error) = checked {
        tracing::warn!(%error, "payment webhook refused");
        return Err(ApiError::bad_request(
            "invalid_signature",
            error.to_string(),
        ));
    }
    let event: WebhookEvent = parse_json(&body)?;
    let seen: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payment_webhook_events WHERE id = $1)")
            .bind(&event.id)
            .fetch_one(payments.db())
            .await?;
    if seen {
        return Ok((
            StatusCode::OK,
            Json(PaymentWebhookReceipt {
                received: true,
                duplicate: true,
                outcome: "ignored",
            }),
        ));
    }
    let outcome = apply(&payments, &event).await.map_err(ApiError::from)?;
    sqlx::query(
        "INSERT INTO payment_webhook_events (id, type, payload, outcome)
         VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.event_type)
    .bind(serde_json::to_value(&event).map_err(anyhow::Error::from)?)
    .bind(outcome)
    .execute(payments.db())
    .await?;
    metrics::counter!("payments_webhooks_total", "type" => event.event_type.clone(), "outcome" => outcome)
        .increment(1);
    Ok((
        StatusCode::OK,
        Json(PaymentWebhookReceipt {
            received: true,
            duplicate: false,
            outcome,
        }),
    ))
}

/// The intent an event is about: by Rentify's id (echoed by the gateway),
/// else by the gateway's.
async fn find_intent(p: &Payments, event: &WebhookEvent) -> PaymentResult<Option<Intent>> {
    let mut conn = p.db().acquire().await?;
    if let Some(id) = event.data.rentify_intent_id {
        return match intents::get(&mut conn, id).await {
            Ok(intent) => Ok(Some(intent)),
            Err(crate::PaymentError::NotFound) => Ok(None),
            Err(error) => Err(error),
        };
    }
    let Some(provider_id) = &event.data.provider_intent_id else {
        return Ok(None);
    };
    let id: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM payment_intents WHERE provider_intent_id = $1")
            .bind(provider_id)
            .fetch_optional(&mut *conn)
            .await?;
    match id {
        Some(id) => Ok(Some(intents::get(&mut conn, id).await?)),
        None => Ok(None),
    }
}

/// Applies one event; returns what happened.
pub async fn apply(p: &Payments, event: &WebhookEvent) -> PaymentResult<&'static str> {
    if event.event_type.starts_with("payout.") {
        return Ok(crate::payouts::apply_webhook(p, event).await?);
    }
    let Some(intent) = find_intent(p, event).await? else {
        return Ok("ignored");
    };
    let data = &event.data;
    match event.event_type.as_str() {
        // Already applied (usually from the call's own answer): nothing to
        // lock. A success for a released authorization still goes through,
        // to be voided again.
        "payment_intent.authorized"
            if intent.purpose == "booking"
                && matches!(intent.status.as_str(), "authorized" | "captured") =>
        {
            Ok("ignored")
        }
        "payment_intent.authorization_failed"
            if intent.purpose == "booking"
                && !matches!(
                    intent.status.as_str(),
                    "authorizing" | "expired" | "voiding"
                ) =>
        {
            Ok("ignored")
        }
        "payment_intent.authorized" | "payment_intent.authorization_failed"
            if intent.purpose == "booking" =>
        {
            let outcome = if event.event_type == "payment_intent.authorized" {
                Ok(())
            } else {
                Err((
                    data.failure_code
                        .clone()
                        .unwrap_or_else(|| "card_declined".into()),
                    data.failure_message
                        .clone()
                        .unwrap_or_else(|| "the card was declined".into()),
                ))
            };
            p.booking_saga()?
                .authorization_decided(intent.id, outcome, data.provider_intent_id.as_deref())
                .await?;
            Ok("applied")
        }
        "payment_intent.authorization_failed" => {
            let mut tx = p.db().begin().await?;
            let intent = intents::lock(&mut tx, intent.id).await?;
            let applied = intents::record_failed(
                &mut tx,
                &intent,
                data.failure_code.as_deref().unwrap_or("card_declined"),
                data.failure_message.as_deref().unwrap_or("declined"),
            )
            .await?;
            tx.commit().await?;
            Ok(if applied { "applied" } else { "ignored" })
        }
        "payment_intent.captured" => {
            let mut tx = p.db().begin().await?;
            let intent = intents::lock(&mut tx, intent.id).await?;
            let applied = if intent.purpose == "booking"
                && intent.status == "authorized"
                && data.amount < intent.amount
            {
                intents::record_partial_capture(p, &mut tx, &intent, data.amount).await?
            } else {
                intents::record_captured(
                    p,
                    &mut tx,
                    &intent,
                    data.provider_intent_id.as_deref(),
                    data.amount,
                )
                .await?
            };
            tx.commit().await?;
            Ok(if applied { "applied" } else { "ignored" })
        }
        "payment_intent.voided" => {
            let mut tx = p.db().begin().await?;
            let intent = intents::lock(&mut tx, intent.id).await?;
            // A void of an authorization the booking still counts on is the
            // gateway's own expiry; the ledger follows the gateway.
            let applied = intents::record_voided(&mut tx, &intent).await?;
            tx.commit().await?;
            Ok(if applied { "applied" } else { "ignored" })
        }
        // Refunds are recorded from the refund call's answer (retried with
        // the same key until answered); the webhook confirms.
        _ => Ok("ignored"),
    }
}
