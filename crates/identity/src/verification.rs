//! Email and phone verification.
//!
//! - Email: a single-use link token (256 random bits, stored as SHA-256,
//!   valid 24 hours) is sent on sign-up and on request; presenting it at
//!   `POST /v1/auth/verify-email` marks the email verified.
//! - Phone: a 6-digit code (stored as SHA-256 bound to the user, valid 10
//!   minutes, 5 attempts) is sent by SMS to the number to verify; the number
//!   is kept encrypted with a blind index until the code is confirmed, then
//!   moved to the account. A number verified by another account is refused.

use axum::{Extension, http::StatusCode};
use chrono::{DateTime, Utc};
use rand::Rng;
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::UserCaller,
    extract::ValidJson,
    outbox::{self, NewEvent},
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Identity, IdentityError,
    audit::{self, AuditContext},
    crypto::{constant_time_eq, random_token, sha256},
    delivery::{self, Message},
    error::codes,
    users::{self, PHONE_CONTEXT, User},
};

/// How long an email verification link stays valid.
pub const EMAIL_TOKEN_TTL_HOURS: i64 = 24;
/// How long a phone code stays valid.
pub const PHONE_CODE_TTL_MINS: i64 = 10;
/// Wrong codes allowed before a phone code is dead.
pub const MAX_OTP_ATTEMPTS: i32 = 5;
/// Every email verification token starts with this.
pub const EMAIL_TOKEN_PREFIX: &str = "ev_";

/// Encryption context and blind-index context of a phone awaiting its code.
const PENDING_PHONE_CONTEXT: &str = "phone_verifications.phone";

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(verify_email))
        .routes(routes!(resend_email_verification))
        .routes(routes!(send_phone_code))
        .routes(routes!(verify_phone))
}

/// A verification message was sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationSent {
    #[schema(example = "verification_sent")]
    pub object: &'static str,
    /// `email` or `sms`.
    pub channel: &'static str,
    /// When the link or code stops working.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmail {
    /// The token from the verification email.
    #[validate(length(min = 1, max = 256))]
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct SendPhoneCode {
    /// E.164: `+` and 8 to 15 digits.
    #[validate(length(min = 1, max = 32))]
    #[schema(example = "+33612345678")]
    pub phone: String,
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct VerifyPhone {
    /// The 6-digit code from the SMS.
    #[validate(length(min = 1, max = 16))]
    #[schema(example = "123456")]
    pub code: String,
}

/// Sends a single-use link to confirm `email`, in the caller's transaction.
pub async fn send_email_verification(
    identity: &Identity,
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
) -> Result<(), IdentityError> {
    issue_email_token(identity, conn, user_id, email).await?;
    Ok(())
}

async fn issue_email_token(
    identity: &Identity,
    conn: &mut PgConnection,
    user_id: Uuid,
    email: &str,
) -> Result<DateTime<Utc>, IdentityError> {
    let token = format!("{EMAIL_TOKEN_PREFIX}{}", random_token(32));
    let expires_at = Utc::now() + chrono::Duration::hours(EMAIL_TOKEN_TTL_HOURS);
    sqlx::query(
        "INSERT INTO email_verifications (token_hash, user_id, email, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256(&token))
    .bind(user_id)
    .bind(email)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    let base = identity.config().public_base_url.trim_end_matches('/');
    let body = format!(
        "Confirm your email address for Rentify:\n\n\
         {base}/verify-email?token={token}\n\n\
         Verification token: {token}\n\n\
         The link works once and expires in {EMAIL_TOKEN_TTL_HOURS} hours. \
         If you did not create a Rentify account, ignore this email."
    );
    delivery::send(
        conn,
        Message {
            channel: "email",
            user_id,
            recipient: email,
            subject: "Confirm your email address",
            body: &body,
        },
    )
    .await?;
    Ok(expires_at)
}

fn invalid_verification_token() -> ApiError {
    ApiError::bad_request(
        codes::INVALID_VERIFICATION_TOKEN,
        "the verification token is invalid, expired or already used",
    )
}

#[derive(sqlx::FromRow)]
struct EmailVerificationRow {
    user_id: Uuid,
    email: String,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

/// Confirms an email address with the token from the verification email.
/// Each token works once.
#[utoipa::path(
    post, path = "/v1/auth/verify-email", tag = "auth",
    request_body = VerifyEmail,
    responses(
        (status = 200, description = "OK", body = User),
        (status = 400, description = "`invalid_verification_token` (unknown, expired or used) or `validation_failed`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn verify_email(
    Extension(identity): Extension<Identity>,
    context: AuditContext,
    ValidJson(input): ValidJson<VerifyEmail>,
) -> ApiResult<axum::Json<User>> {
    let mut tx = identity.db().begin().await?;
    let row: Option<EmailVerificationRow> = sqlx::query_as(
        "SELECT user_id, email, expires_at, used_at FROM email_verifications WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(sha256(input.token.trim()))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row.filter(|r| r.used_at.is_none() && r.expires_at > Utc::now()) else {
        return Err(invalid_verification_token());
    };
    sqlx::query("UPDATE email_verifications SET used_at = now() WHERE token_hash = $1")
        .bind(sha256(input.token.trim()))
        .execute(&mut *tx)
        .await?;
    // Only the address the link was sent to, on a live account.
    let updated = sqlx::query(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, now()), updated_at = now()
         WHERE id = $1 AND email = $2 AND status = 'active'",
    )
    .bind(row.user_id)
    .bind(&row.email)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(invalid_verification_token());
    }
    audit::record(
        &mut tx,
        &context.as_user(row.user_id),
        "user.email_verified",
        "user",
        row.user_id,
        serde_json::json!({}),
    )
    .await?;
    outbox::record(
        &mut tx,
        NewEvent {
            event_type: "user.email_verified",
            aggregate_type: "user",
            aggregate_id: row.user_id.to_string(),
            payload: serde_json::json!({ "user_id": row.user_id }),
        },
    )
    .await
    .map_err(ApiError::internal)?;
    let user = users::find_active(&mut tx, row.user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(identity.user_view(&user)?))
}

/// Sends a new verification link to the caller's email; earlier unused
/// links stop working.
#[utoipa::path(
    post, path = "/v1/auth/verify-email/resend", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted", body = VerificationSent),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`email_already_verified`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn resend_email_verification(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
) -> ApiResult<(StatusCode, axum::Json<VerificationSent>)> {
    let mut tx = identity.db().begin().await?;
    let user = users::find_active(&mut tx, caller.user_id).await?;
    let Some(email) = user.email.clone() else {
        return Err(ApiError::conflict(
            codes::EMAIL_ALREADY_VERIFIED,
            "this account has no email address to verify",
        ));
    };
    if user.email_verified_at.is_some() {
        return Err(ApiError::conflict(
            codes::EMAIL_ALREADY_VERIFIED,
            "the email address is already verified",
        ));
    }
    sqlx::query("DELETE FROM email_verifications WHERE user_id = $1 AND used_at IS NULL")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    let expires_at = issue_email_token(&identity, &mut tx, caller.user_id, &email).await?;
    audit::record(
        &mut tx,
        &context,
        "user.email_verification_sent",
        "user",
        caller.user_id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(VerificationSent {
            object: "verification_sent",
            channel: "email",
            expires_at,
        }),
    ))
}

/// `phone` in E.164 (`+` and 8 to 15 digits, the first not 0), with spaces,
/// dots, dashes and parentheses removed; `None` if it is not a number.
pub fn normalize_phone(phone: &str) -> Option<String> {
    let compact: String = phone
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix('+')?;
    let valid = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    valid.then_some(compact)
}

/// SHA-256 of a phone code bound to its user (the same code of another
/// user hashes differently).
fn code_hash(user_id: Uuid, code: &str) -> Vec<u8> {
    sha256(&format!("{user_id}:{code}"))
}

fn phone_taken() -> ApiError {
    ApiError::conflict(
        codes::PHONE_TAKEN,
        "this phone number is already verified by another account",
    )
}

/// Sends a 6-digit code by SMS to confirm `phone` for the caller. A new
/// request replaces an outstanding code.
#[utoipa::path(
    post, path = "/v1/auth/verify-phone/send", tag = "auth",
    security(("bearer" = [])),
    request_body = SendPhoneCode,
    responses(
        (status = 202, description = "Accepted", body = VerificationSent),
        (status = 400, description = "`validation_failed` (not E.164)", body = rentify_platform::error::ErrorEnvelope),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`phone_taken`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn send_phone_code(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
    ValidJson(input): ValidJson<SendPhoneCode>,
) -> ApiResult<(StatusCode, axum::Json<VerificationSent>)> {
    let phone = normalize_phone(&input.phone).ok_or_else(|| {
        ApiError::invalid_field(
            "phone",
            "e164",
            "must be an E.164 number: `+` and 8 to 15 digits, e.g. +33612345678",
        )
    })?;
    let blind_index = identity.blind_index().compute(PHONE_CONTEXT, &phone);
    let mut tx = identity.db().begin().await?;
    users::find_active(&mut tx, caller.user_id).await?;
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM users WHERE phone_blind_index = $1 AND id <> $2)",
    )
    .bind(&blind_index)
    .bind(caller.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Err(phone_taken());
    }
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
    let expires_at = Utc::now() + chrono::Duration::minutes(PHONE_CODE_TTL_MINS);
    sqlx::query(
        "INSERT INTO phone_verifications (user_id, phone_ciphertext, phone_blind_index, code_hash, attempts, expires_at)
         VALUES ($1, $2, $3, $4, 0, $5)
         ON CONFLICT (user_id) DO UPDATE SET
            phone_ciphertext = EXCLUDED.phone_ciphertext,
            phone_blind_index = EXCLUDED.phone_blind_index,
            code_hash = EXCLUDED.code_hash,
            attempts = 0,
            created_at = now(),
            expires_at = EXCLUDED.expires_at",
    )
    .bind(caller.user_id)
    .bind(identity.cipher().encrypt_str(PENDING_PHONE_CONTEXT, &phone))
    .bind(&blind_index)
    .bind(code_hash(caller.user_id, &code))
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    let body = format!(
        "Your Rentify verification code is {code}. It expires in {PHONE_CODE_TTL_MINS} minutes. Never share it."
    );
    delivery::send(
        &mut tx,
        Message {
            channel: "sms",
            user_id: caller.user_id,
            recipient: &phone,
            subject: "Rentify verification code",
            body: &body,
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &context,
        "user.phone_verification_sent",
        "user",
        caller.user_id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(VerificationSent {
            object: "verification_sent",
            channel: "sms",
            expires_at,
        }),
    ))
}

#[derive(sqlx::FromRow)]
struct PhoneVerificationRow {
    phone_ciphertext: Vec<u8>,
    phone_blind_index: Vec<u8>,
    code_hash: Vec<u8>,
    attempts: i32,
    expires_at: DateTime<Utc>,
}

fn attempts_exceeded() -> ApiError {
    ApiError::bad_request(
        codes::OTP_ATTEMPTS_EXCEEDED,
        "too many wrong codes; request a new code",
    )
}

/// Confirms the phone number with the code sent by SMS; the number becomes
/// the account's verified phone. Five wrong codes end the code.
#[utoipa::path(
    post, path = "/v1/auth/verify-phone", tag = "auth",
    security(("bearer" = [])),
    request_body = VerifyPhone,
    responses(
        (status = 200, description = "OK", body = User),
        (status = 400, description = "`invalid_otp` (wrong, with `remaining_attempts` in details; expired; none outstanding) or `otp_attempts_exceeded`", body = rentify_platform::error::ErrorEnvelope),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`phone_taken`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn verify_phone(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
    ValidJson(input): ValidJson<VerifyPhone>,
) -> ApiResult<axum::Json<User>> {
    let mut tx = identity.db().begin().await?;
    users::find_active(&mut tx, caller.user_id).await?;
    let row: Option<PhoneVerificationRow> = sqlx::query_as(
        "SELECT phone_ciphertext, phone_blind_index, code_hash, attempts, expires_at
         FROM phone_verifications WHERE user_id = $1 FOR UPDATE",
    )
    .bind(caller.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(ApiError::bad_request(
            codes::INVALID_OTP,
            "no code is outstanding; request one at /v1/auth/verify-phone/send",
        ));
    };
    if row.attempts >= MAX_OTP_ATTEMPTS {
        return Err(attempts_exceeded());
    }
    if row.expires_at <= Utc::now() {
        return Err(ApiError::bad_request(
            codes::INVALID_OTP,
            "the code has expired; request a new one",
        ));
    }
    if !constant_time_eq(
        &code_hash(caller.user_id, input.code.trim()),
        &row.code_hash,
    ) {
        let attempts = row.attempts + 1;
        sqlx::query("UPDATE phone_verifications SET attempts = $2 WHERE user_id = $1")
            .bind(caller.user_id)
            .bind(attempts)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            &context,
            "user.phone_verification_failed",
            "user",
            caller.user_id,
            serde_json::json!({ "attempts": attempts }),
        )
        .await?;
        tx.commit().await?;
        if attempts >= MAX_OTP_ATTEMPTS {
            return Err(attempts_exceeded());
        }
        return Err(
            ApiError::bad_request(codes::INVALID_OTP, "the code is not correct").with_detail(
                serde_json::json!({ "remaining_attempts": MAX_OTP_ATTEMPTS - attempts }),
            ),
        );
    }
    let phone = identity
        .cipher()
        .decrypt_string(PENDING_PHONE_CONTEXT, &row.phone_ciphertext)
        .map_err(ApiError::internal)?;
    let updated = sqlx::query(
        "UPDATE users SET phone_ciphertext = $2, phone_blind_index = $3, phone_verified_at = now(), updated_at = now()
         WHERE id = $1",
    )
    .bind(caller.user_id)
    .bind(identity.cipher().encrypt_str(PHONE_CONTEXT, &phone))
    .bind(&row.phone_blind_index)
    .execute(&mut *tx)
    .await;
    match updated {
        // Another account verified the number since the code was sent.
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_phone_key") => {
            return Err(phone_taken());
        }
        other => other?,
    };
    sqlx::query("DELETE FROM phone_verifications WHERE user_id = $1")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &context,
        "user.phone_verified",
        "user",
        caller.user_id,
        serde_json::json!({}),
    )
    .await?;
    let user = users::find_active(&mut tx, caller.user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(identity.user_view(&user)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_must_be_e164() {
        assert_eq!(
            normalize_phone(" +33 6 12-34-56-78 ").as_deref(),
            Some("+33612345678")
        );
        assert_eq!(normalize_phone("+12345678").as_deref(), Some("+12345678"));
        for bad in [
            "33612345678",
            "+1234567",
            "+1234567890123456",
            "+0612345678",
            "+3361234567a",
            "",
            "+",
        ] {
            assert_eq!(normalize_phone(bad), None, "{bad}");
        }
    }

    #[test]
    fn codes_are_bound_to_their_user() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(code_hash(a, "123456"), code_hash(a, "123456"));
        assert_ne!(code_hash(a, "123456"), code_hash(b, "123456"));
        assert_ne!(code_hash(a, "123456"), code_hash(a, "123457"));
    }
}
