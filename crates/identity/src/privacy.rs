//! Privacy: GDPR data export (right of access, art. 15 and 20) and erasure
//! (right to be forgotten, art. 17).
//!
//! Erasure keeps the `users` row, stripped of personal data and marked
//! `erased`, so records that must outlive the account (bookings, ledger
//! entries, the audit log) stay linked to an id that no longer names anyone.
//! The audit log is append-only and holds ids, not personal data.

use axum::{
    Extension,
    http::{HeaderValue, StatusCode, header},
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::UserCaller,
    outbox::{self, NewEvent},
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    Identity,
    audit::{self, AuditContext, AuditEntry},
    kyc::REFERENCE_CONTEXT,
    sessions,
    users::{self, User},
};

/// The display name an erased account keeps.
pub const ERASED_DISPLAY_NAME: &str = "Deleted user";

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(export_data))
        .routes(routes!(erase_me))
}

/// Everything Rentify holds about the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataExport {
    #[schema(example = "data_export")]
    pub object: &'static str,
    pub generated_at: DateTime<Utc>,
    pub user: User,
    pub roles: Vec<ExportedRole>,
    pub identity_verifications: Vec<ExportedIdentityVerification>,
    /// Sign-ins (refresh-token families); never the tokens or their hashes.
    pub sessions: Vec<ExportedSession>,
    pub linked_identities: Vec<ExportedLinkedIdentity>,
    pub mfa: ExportedMfa,
    pub api_keys_created: Vec<ExportedApiKey>,
    /// Messages sent to the user (emails, SMS).
    pub deliveries: Vec<ExportedDelivery>,
    /// Audit entries about the user or by the user. Other people's ids are
    /// left out (`actor_id`/`subject_id` null).
    pub audit_log: Vec<AuditEntry>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ExportedRole {
    pub role: String,
    pub granted_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ExportedIdentityVerification {
    pub id: Uuid,
    pub document_type: String,
    /// Decrypted.
    #[sqlx(skip)]
    pub document_reference: Option<String>,
    #[serde(skip)]
    pub document_reference_ciphertext: Vec<u8>,
    pub status: String,
    pub reason: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ExportedSession {
    /// The sign-in (token family) id.
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// When the last token of the sign-in was issued.
    pub last_refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ExportedLinkedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedMfa {
    pub enabled: bool,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ExportedApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ExportedDelivery {
    pub id: Uuid,
    /// `email`, `sms` or `push`.
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// A machine-readable copy of the caller's personal data (GDPR access and
/// portability). Recorded in the audit log as `user.data_exported`.
#[utoipa::path(
    get, path = "/v1/users/me/data-export", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, body = DataExport, description = "Sent with `Cache-Control: no-store`"),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 403, description = "API keys cannot export", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn export_data(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
) -> ApiResult<impl IntoResponse> {
    let user_id = caller.user_id;
    let mut tx = identity.db().begin().await?;
    let row = users::find_active(&mut tx, user_id).await?;
    // A sensitive read: recorded first, so the export lists itself.
    audit::record(
        &mut tx,
        &context,
        "user.data_exported",
        "user",
        user_id,
        serde_json::json!({}),
    )
    .await?;
    let user = identity.user_view(&row)?;
    let roles: Vec<ExportedRole> = sqlx::query_as(
        "SELECT role, granted_at FROM user_roles WHERE user_id = $1 ORDER BY granted_at, role",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut identity_verifications: Vec<ExportedIdentityVerification> = sqlx::query_as(
        "SELECT id, document_type, document_reference_ciphertext, status, reason, submitted_at, decided_at
         FROM identity_verifications WHERE user_id = $1 ORDER BY submitted_at, id",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    for verification in &mut identity_verifications {
        verification.document_reference = identity
            .cipher()
            .decrypt_string(
                REFERENCE_CONTEXT,
                &verification.document_reference_ciphertext,
            )
            .ok();
    }
    let sessions: Vec<ExportedSession> = sqlx::query_as(
        "SELECT family_id AS id, min(created_at) AS created_at, max(created_at) AS last_refreshed_at,
                max(expires_at) AS expires_at, max(revoked_at) AS revoked_at
         FROM refresh_tokens WHERE user_id = $1
         GROUP BY family_id ORDER BY min(created_at), family_id",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    let linked_identities: Vec<ExportedLinkedIdentity> = sqlx::query_as(
        "SELECT issuer, subject, email, created_at FROM user_identities WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    let api_keys_created: Vec<ExportedApiKey> = sqlx::query_as(
        "SELECT id, name, prefix, scopes, created_at, last_used_at, revoked_at
         FROM api_keys WHERE created_by = $1 ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    let deliveries: Vec<ExportedDelivery> = sqlx::query_as(
        "SELECT id, channel, recipient, subject, body, created_at
         FROM dev_deliveries WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    // Other people's ids (an admin who acted on the account, an account the
    // user acted on) are not the user's data: they are left out.
    let mut audit_log: Vec<AuditEntry> = sqlx::query_as(
        "SELECT id, occurred_at, actor_kind,
                CASE WHEN actor_id = $1 THEN actor_id END AS actor_id,
                action, subject_type,
                CASE WHEN subject_type = 'user' AND subject_id <> $1::text THEN NULL
                     ELSE subject_id END AS subject_id,
                request_id, metadata
         FROM audit_log
         WHERE actor_id = $1 OR (subject_type = 'user' AND subject_id = $1::text)
         ORDER BY position",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    for entry in &mut audit_log {
        entry.object = "audit_entry";
    }
    tx.commit().await?;
    let export = DataExport {
        object: "data_export",
        generated_at: Utc::now(),
        mfa: ExportedMfa {
            enabled: row.mfa_enabled,
        },
        user,
        roles,
        identity_verifications,
        sessions,
        linked_identities,
        api_keys_created,
        deliveries,
        audit_log,
    };
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(export),
    ))
}

/// Erases the caller's account (GDPR erasure): personal data is deleted or
/// overwritten, every session ends and the email becomes free again. The
/// account's id stays, marked `erased`, so records that must be kept (the
/// audit log, bookings, the ledger) stay linked to it. Irreversible.
#[utoipa::path(
    delete, path = "/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 403, description = "API keys cannot erase", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn erase_me(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
) -> ApiResult<StatusCode> {
    let user_id = caller.user_id;
    let mut tx = identity.db().begin().await?;
    users::lock_active(&mut tx, user_id).await?;
    sqlx::query(
        "UPDATE users SET
            email = NULL, email_verified_at = NULL, password_hash = NULL,
            display_name = $2, avatar_url = NULL,
            phone_ciphertext = NULL, phone_blind_index = NULL, phone_verified_at = NULL,
            location = NULL, preferences = '{}',
            failed_logins = 0, failed_window_start = NULL, locked_until = NULL, lockout_level = 0,
            mfa_enabled = false,
            status = 'erased', erased_at = now(), updated_at = now()
         WHERE id = $1",
    )
    .bind(user_id)
    .bind(ERASED_DISPLAY_NAME)
    .execute(&mut *tx)
    .await?;
    sessions::revoke_all(&mut tx, user_id, "erased").await?;
    for statement in [
        "DELETE FROM email_verifications WHERE user_id = $1",
        "DELETE FROM phone_verifications WHERE user_id = $1",
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
        "DELETE FROM mfa_challenges WHERE user_id = $1",
        "DELETE FROM mfa_factors WHERE user_id = $1",
        "DELETE FROM user_identities WHERE user_id = $1",
        "DELETE FROM dev_deliveries WHERE user_id = $1",
        // The decision stays (it may matter to kept records); the document
        // reference and the provider's reason go.
        "UPDATE identity_verifications SET document_reference_ciphertext = '\\x'::bytea, reason = NULL
         WHERE user_id = $1",
    ] {
        sqlx::query(statement)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
    }
    audit::record(
        &mut tx,
        &context,
        "user.erased",
        "user",
        user_id,
        serde_json::json!({}),
    )
    .await?;
    outbox::record(
        &mut tx,
        NewEvent {
            event_type: "user.erased",
            aggregate_type: "user",
            aggregate_id: user_id.to_string(),
            payload: serde_json::json!({ "user_id": user_id }),
        },
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
