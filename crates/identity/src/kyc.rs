//! Identity verification (KYC) through a third-party provider.
//!
//! A user submits a document (`POST /v1/users/me/identity`); the reference
//! is stored encrypted and the account becomes `pending`. The provider
//! reports its decision through a signed webhook (`POST /v1/webhooks/kyc`):
//!
//! - `Rentify-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the MAC
//!   is over `"<t>.<raw body>"` under `KYC_WEBHOOK_SECRET` (several `v1=`
//!   entries are accepted, so the provider can roll its secret), checked in
//!   constant time by `rentify_platform::webhook_signature` (shared with the
//!   payment webhooks), within [`SIGNATURE_TOLERANCE_SECS`] of now. In
//!   development an unset secret means [`DEV_WEBHOOK_SECRET`]; production
//!   refuses to start without one.
//! - Each event id is applied once (`kyc_webhook_events`): a replay is
//!   acknowledged with `"duplicate": true` and changes nothing.
//! - An event about an unknown verification, or one already decided, is
//!   acknowledged with `"ignored": true` (200, so the provider stops
//!   retrying) and changes nothing.

use axum::{
    Extension,
    body::Bytes,
    http::{HeaderMap, StatusCode},
};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::UserCaller,
    extract::{ValidJson, parse_json},
    ids::new_id,
    outbox::{self, NewEvent},
    webhook_signature::{self, SignatureError, verify_signature},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Identity,
    audit::{self, AuditContext},
    error::codes,
    users,
};

/// Encryption context of document references.
pub const REFERENCE_CONTEXT: &str = "identity_verifications.document_reference";
/// The header carrying the webhook signature.
pub const SIGNATURE_HEADER: &str = "rentify-signature";
/// How far a signature's timestamp may be from now, either way.
pub use rentify_platform::webhook_signature::signature_header;

pub const SIGNATURE_TOLERANCE_SECS: i64 = webhook_signature::TOLERANCE_SECS;
/// The webhook secret used in development when `KYC_WEBHOOK_SECRET` is unset.
pub const DEV_WEBHOOK_SECRET: &str = "whsec_dev_kyc";

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(submit_identity, get_identity))
        .routes(routes!(kyc_webhook))
}

/// The kind of identity document.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    Passport,
    NationalId,
    DrivingLicence,
}

impl DocumentType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passport => "passport",
            Self::NationalId => "national_id",
            Self::DrivingLicence => "driving_licence",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct SubmitIdentity {
    pub document_type: DocumentType,
    /// The provider's reference of the document check (stored encrypted).
    #[validate(length(min = 1, max = 200))]
    pub document_reference: String,
}

/// One identity verification, as its owner sees it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct IdentityVerification {
    pub id: Uuid,
    #[sqlx(skip)]
    #[schema(example = "identity_verification")]
    pub object: &'static str,
    /// `pending`, `verified` or `rejected`.
    pub status: String,
    /// `passport`, `national_id` or `driving_licence`.
    pub document_type: String,
    /// Why the provider rejected the document.
    pub reason: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// Submits an identity document for verification; the account's
/// `identity_status` becomes `pending` until the provider decides.
#[utoipa::path(
    post, path = "/v1/users/me/identity", tag = "users",
    security(("bearer" = [])),
    request_body = SubmitIdentity,
    responses(
        (status = 201, description = "Created", body = IdentityVerification),
        (status = 400, description = "`validation_failed`", body = rentify_platform::error::ErrorEnvelope),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`identity_verification_pending` or `identity_already_verified`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn submit_identity(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
    ValidJson(input): ValidJson<SubmitIdentity>,
) -> ApiResult<(StatusCode, axum::Json<IdentityVerification>)> {
    let reference = input.document_reference.trim();
    if reference.is_empty() {
        return Err(ApiError::invalid_field(
            "document_reference",
            "length",
            "must not be blank",
        ));
    }
    let mut tx = identity.db().begin().await?;
    // Locks the account: one submission at a time.
    let user = users::lock_active(&mut tx, caller.user_id).await?;
    match user.identity_status.as_str() {
        "pending" => {
            return Err(ApiError::conflict(
                codes::IDENTITY_VERIFICATION_PENDING,
                "a verification is already pending; wait for its decision",
            ));
        }
        "verified" => {
            return Err(ApiError::conflict(
                codes::IDENTITY_ALREADY_VERIFIED,
                "the identity is already verified",
            ));
        }
        _ => {}
    }
    let id = new_id();
    let mut verification: IdentityVerification = sqlx::query_as(
        "INSERT INTO identity_verifications (id, user_id, document_type, document_reference_ciphertext)
         VALUES ($1, $2, $3, $4)
         RETURNING id, status, document_type, reason, submitted_at, decided_at",
    )
    .bind(id)
    .bind(caller.user_id)
    .bind(input.document_type.as_str())
    .bind(identity.cipher().encrypt_str(REFERENCE_CONTEXT, reference))
    .fetch_one(&mut *tx)
    .await?;
    verification.object = "identity_verification";
    sqlx::query("UPDATE users SET identity_status = 'pending', updated_at = now() WHERE id = $1")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &context,
        "user.identity_submitted",
        "user",
        caller.user_id,
        serde_json::json!({ "verification_id": id, "document_type": input.document_type.as_str() }),
    )
    .await?;
    outbox::record(
        &mut tx,
        NewEvent {
            event_type: "user.identity_submitted",
            aggregate_type: "user",
            aggregate_id: caller.user_id.to_string(),
            payload: serde_json::json!({ "user_id": caller.user_id, "verification_id": id }),
        },
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(verification)))
}

/// The caller's latest identity verification.
#[utoipa::path(
    get, path = "/v1/users/me/identity", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = IdentityVerification),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 404, description = "nothing submitted yet", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn get_identity(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
) -> ApiResult<axum::Json<IdentityVerification>> {
    let mut conn = identity.db().acquire().await?;
    users::find_active(&mut conn, caller.user_id).await?;
    let verification: Option<IdentityVerification> = sqlx::query_as(
        "SELECT id, status, document_type, reason, submitted_at, decided_at
         FROM identity_verifications WHERE user_id = $1
         ORDER BY submitted_at DESC, id DESC LIMIT 1",
    )
    .bind(caller.user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let mut verification = verification.ok_or_else(ApiError::not_found)?;
    verification.object = "identity_verification";
    Ok(axum::Json(verification))
}

/// A KYC provider's event.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct KycWebhookEvent {
    /// The provider's event id; each is applied once.
    pub id: String,
    /// `identity_verification.verified` or `identity_verification.rejected`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: KycWebhookData,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct KycWebhookData {
    pub verification_id: Uuid,
    /// Why the document was rejected.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The acknowledgement of a webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    pub received: bool,
    /// The event id was already processed; nothing changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The event was not applied (unknown type or verification, or already
    /// decided); nothing changed and there is no point retrying.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
}

impl WebhookReceipt {
    fn applied() -> Self {
        Self {
            received: true,
            duplicate: false,
            ignored: false,
        }
    }

    fn duplicate() -> Self {
        Self {
            duplicate: true,
            ..Self::applied()
        }
    }

    fn ignored() -> Self {
        Self {
            ignored: true,
            ..Self::applied()
        }
    }
}

fn webhook_secret(identity: &Identity) -> Vec<u8> {
    match &identity.config().kyc_webhook_secret {
        Some(secret) => secret.expose_secret().as_bytes().to_vec(),
        // Production refuses to start without KYC_WEBHOOK_SECRET.
        None => DEV_WEBHOOK_SECRET.as_bytes().to_vec(),
    }
}

#[derive(sqlx::FromRow)]
struct PendingVerification {
    user_id: Uuid,
    status: String,
}

/// The KYC provider's decision about a verification. Signed with
/// `Rentify-Signature` (see the module documentation); no bearer token.
#[utoipa::path(
    post, path = "/v1/webhooks/kyc", tag = "webhooks",
    params(
        ("Rentify-Signature" = String, Header,
         description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" under the shared secret>`; several `v1=` allowed; 5 minutes tolerance"),
    ),
    request_body = KycWebhookEvent,
    responses(
        (status = 200, description = "Applied, or acknowledged with `duplicate` or `ignored`", body = WebhookReceipt),
        (status = 400, description = "`invalid_signature`, `invalid_json` or `validation_failed`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn kyc_webhook(
    Extension(identity): Extension<Identity>,
    context: AuditContext,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<WebhookReceipt>> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .map(|v| v.to_str().map_err(|_| SignatureError::Malformed))
        .transpose();
    let checked = header.and_then(|header| {
        verify_signature(
            header,
            &body,
            &webhook_secret(&identity),
            Utc::now().timestamp(),
            SIGNATURE_TOLERANCE_SECS,
        )
    });
    if let Err(error) = checked {
        tracing::warn!(%error, "KYC webhook refused");
        return Err(ApiError::bad_request(
            codes::INVALID_SIGNATURE,
            error.to_string(),
        ));
    }
    let event: KycWebhookEvent = parse_json(&body)?;
    let (new_status, action, event_type) = match event.event_type.as_str() {
        "identity_verification.verified" => (
            "verified",
            "user.identity_verified",
            "user.identity_verified",
        ),
        "identity_verification.rejected" => (
            "rejected",
            "user.identity_rejected",
            "user.identity_rejected",
        ),
        other => {
            tracing::info!(event.type = other, "KYC webhook of an unhandled type ignored");
            return Ok(axum::Json(WebhookReceipt::ignored()));
        }
    };
    if event.id.is_empty() || event.id.len() > 255 {
        return Err(ApiError::invalid_field(
            "id",
            "length",
            "must be 1 to 255 characters",
        ));
    }
    let mut tx = identity.db().begin().await?;
    // The event id first: a concurrent delivery of the same event waits
    // here and then sees it as a duplicate.
    let first = sqlx::query(
        "INSERT INTO kyc_webhook_events (event_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.event_type)
    .execute(&mut *tx)
    .await?;
    if first.rows_affected() == 0 {
        return Ok(axum::Json(WebhookReceipt::duplicate()));
    }
    let verification_id = event.data.verification_id;
    let verification: Option<PendingVerification> = sqlx::query_as(
        "SELECT user_id, status FROM identity_verifications WHERE id = $1 FOR UPDATE",
    )
    .bind(verification_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(verification) = verification.filter(|v| v.status == "pending") else {
        tracing::warn!(%verification_id, event.id = %event.id, "KYC webhook about an unknown or decided verification ignored");
        tx.commit().await?;
        return Ok(axum::Json(WebhookReceipt::ignored()));
    };
    let reason = match new_status {
        "rejected" => event
            .data
            .reason
            .as_deref()
            .map(|r| r.chars().take(500).collect::<String>()),
        _ => None,
    };
    sqlx::query(
        "UPDATE identity_verifications SET status = $2, reason = $3, decided_at = now() WHERE id = $1",
    )
    .bind(verification_id)
    .bind(new_status)
    .bind(&reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE users SET identity_status = $2, updated_at = now() WHERE id = $1")
        .bind(verification.user_id)
        .bind(new_status)
        .execute(&mut *tx)
        .await?;
    // The provider acted; the request id ties the entry to the logs.
    let context = AuditContext {
        request_id: context.request_id,
        ..AuditContext::system("provider")
    };
    audit::record(
        &mut tx,
        &context,
        action,
        "user",
        verification.user_id,
        serde_json::json!({
            "verification_id": verification_id,
            "event_id": event.id,
            "reason": reason,
        }),
    )
    .await?;
    outbox::record(
        &mut tx,
        NewEvent {
            event_type,
            aggregate_type: "user",
            aggregate_id: verification.user_id.to_string(),
            payload: serde_json::json!({
                "user_id": verification.user_id,
                "verification_id": verification_id,
                "reason": reason,
            }),
        },
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(axum::Json(WebhookReceipt::applied()))
}
