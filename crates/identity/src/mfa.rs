//! Multi-factor authentication: TOTP (RFC 6238) and one-time recovery codes.
//!
//! Enrolment stores a fresh 160-bit secret (AES-256-GCM, like every secret
//! at rest) and shows it once as base32 and as an `otpauth://` URI; a valid
//! code confirms it, turns MFA on and returns ten recovery codes, stored as
//! SHA-256 and shown only then. With MFA on, a correct password answers 401
//! `mfa_required` with a challenge (5 minutes, 5 attempts, single use) that
//! `POST /v1/auth/mfa` exchanges for a session. A TOTP time step is accepted
//! at most once (`last_used_step`), so an observed code cannot be replayed.

use axum::{Extension, http::StatusCode};
use chrono::Utc;
use rand::Rng;
use rentify_platform::{
    ApiError, ApiResult, PlatformState, auth::UserCaller, extract::ValidJson, ids::new_id,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Identity, IdentityError,
    audit::{self, AuditContext},
    crypto::{constant_time_eq, random_token, sha256},
    error::codes,
    sessions::{self, Session},
    users,
};

/// Encryption context (AAD) of `mfa_factors.secret_ciphertext`.
pub const SECRET_CONTEXT: &str = "mfa_factors.secret";
/// Every challenge token starts with this.
pub const CHALLENGE_PREFIX: &str = "mfa_";
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Rentify";
/// How long a login challenge lives, in seconds.
pub const CHALLENGE_TTL_SECS: i64 = 300;
/// Wrong codes a challenge survives; the last one kills it.
pub const MAX_ATTEMPTS: i32 = 5;
/// Recovery codes issued when MFA is turned on.
pub const RECOVERY_CODES: usize = 10;
/// Accepted clock drift, in time steps either side.
const DRIFT_STEPS: i64 = 1;
/// Unambiguous characters of recovery codes (no 0/o, 1/i/l).
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(enroll_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(disable_mfa))
        .routes(routes!(complete_challenge))
}

/// RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30-second steps) and RFC 4648 base32.
pub mod totp {
    use hmac::{Hmac, Mac};
    use sha1::Sha1;

    pub const DIGITS: usize = 6;
    pub const PERIOD_SECS: i64 = 30;
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// The time step of a Unix time.
    pub fn step_at(unix_secs: i64) -> i64 {
        unix_secs.div_euclid(PERIOD_SECS)
    }

    /// The code of `step` (RFC 4226 dynamic truncation), zero-padded.
    pub fn code(secret: &[u8], step: u64) -> String {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
        mac.update(&step.to_be_bytes());
        let hash = mac.finalize().into_bytes();
        let offset = (hash[hash.len() - 1] & 0x0f) as usize;
        let binary = u32::from_be_bytes([
            hash[offset],
            hash[offset + 1],
            hash[offset + 2],
            hash[offset + 3],
        ]) & 0x7fff_ffff;
        format!("{:06}", binary % 10u32.pow(DIGITS as u32))
    }

    /// Base32 without padding, as authenticator apps expect.
    pub fn base32_encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
        let (mut buffer, mut bits) = (0u32, 0u32);
        for &byte in bytes {
            buffer = (buffer << 8) | byte as u32;
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
        }
        out
    }

    /// Decodes base32 (case-insensitive; spaces and padding ignored).
    pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() * 5 / 8);
        let (mut buffer, mut bits) = (0u32, 0u32);
        for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
            let value = BASE32
                .iter()
                .position(|&b| b as char == c.to_ascii_uppercase())?;
            buffer = (buffer << 5) | value as u32;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        Some(out)
    }
}

/// A started enrolment: add the secret to an authenticator app, then confirm.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaEnrollment {
    #[schema(example = "mfa_enrollment")]
    pub object: &'static str,
    /// The TOTP secret, base32. Shown only in this response.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// The same secret as a key URI, for a QR code.
    #[schema(
        example = "otpauth://totp/Rentify:ada@example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Rentify&algorithm=SHA1&digits=6&period=30"
    )]
    pub otpauth_uri: String,
}

/// Whether MFA is on.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaStatus {
    #[schema(example = "mfa_status")]
    pub object: &'static str,
    pub enabled: bool,
    /// One-time codes for when the authenticator is lost: present only in
    /// the response that turned MFA on, and never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    /// A current 6-digit code from the authenticator app; to turn MFA off, a
    /// recovery code is accepted too.
    #[validate(length(min = 1, max = 64))]
    #[schema(example = "123456")]
    pub code: String,
}

/// Answers the `mfa_required` challenge of a login: `challenge` with either
/// `code` or `recovery_code`.
#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct CompleteMfa {
    /// The `challenge` from the `mfa_required` error details.
    #[validate(length(min = 1, max = 256))]
    pub challenge: String,
    /// A current 6-digit code from the authenticator app.
    #[validate(length(min = 1, max = 64))]
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// One of the recovery codes; each works once.
    #[validate(length(min = 1, max = 64))]
    #[schema(example = "abcde-fghjk")]
    pub recovery_code: Option<String>,
}

fn invalid_code() -> ApiError {
    ApiError::bad_request(
        codes::INVALID_MFA_CODE,
        "the code is wrong, expired or was already used",
    )
}

fn invalid_challenge() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        codes::INVALID_MFA_CHALLENGE,
        "the MFA challenge is invalid, expired, used or out of attempts; sign in again",
    )
}

/// The step `code` matches within the accepted drift, if it is newer than
/// `last_used` (a step is never accepted twice).
fn matching_step(secret: &[u8], code: &str, unix_secs: i64, last_used: Option<i64>) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != totp::DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = totp::step_at(unix_secs);
    let mut found = None;
    for step in (current - DRIFT_STEPS..=current + DRIFT_STEPS).filter(|s| *s >= 0) {
        let expected = totp::code(secret, step as u64);
        let fresh = last_used.is_none_or(|last| step > last);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && fresh && found.is_none() {
            found = Some(step);
        }
    }
    found
}

#[derive(sqlx::FromRow)]
struct FactorRow {
    secret_ciphertext: Vec<u8>,
    last_used_step: Option<i64>,
}

/// Checks a TOTP code against the user's factor (confirmed or pending, as
/// asked) and records its step. `false` when wrong, replayed or absent.
async fn use_totp(
    identity: &Identity,
    conn: &mut PgConnection,
    user_id: Uuid,
    code: &str,
    confirmed: bool,
) -> ApiResult<bool> {
    let factor: Option<FactorRow> = sqlx::query_as(
        "SELECT secret_ciphertext, last_used_step FROM mfa_factors
         WHERE user_id = $1 AND (confirmed_at IS NOT NULL) = $2 FOR UPDATE",
    )
    .bind(user_id)
    .bind(confirmed)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(factor) = factor else {
        return Ok(false);
    };
    let secret = identity
        .cipher()
        .decrypt(SECRET_CONTEXT, &factor.secret_ciphertext)
        .map_err(ApiError::internal)?;
    let Some(step) = matching_step(&secret, code, Utc::now().timestamp(), factor.last_used_step)
    else {
        return Ok(false);
    };
    sqlx::query("UPDATE mfa_factors SET last_used_step = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(step)
        .execute(conn)
        .await?;
    Ok(true)
}

/// Lower-cased, without separators: how recovery codes are hashed.
fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Spends a recovery code; `false` when unknown or already used.
async fn use_recovery_code(conn: &mut PgConnection, user_id: Uuid, code: &str) -> ApiResult<bool> {
    let normalized = normalize_recovery_code(code);
    if normalized.is_empty() {
        return Ok(false);
    }
    let spent = sqlx::query(
        "UPDATE mfa_recovery_codes SET used_at = now()
         WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    )
    .bind(user_id)
    .bind(sha256(&normalized))
    .execute(conn)
    .await?;
    Ok(spent.rows_affected() == 1)
}

async fn remaining_recovery_codes(conn: &mut PgConnection, user_id: Uuid) -> ApiResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(conn)
    .await?)
}

/// `xxxxx-xxxxx` from an unambiguous alphabet (about 50 bits).
fn new_recovery_code() -> String {
    let mut rng = rand::rng();
    let mut code = String::with_capacity(11);
    for i in 0..10 {
        if i == 5 {
            code.push('-');
        }
        code.push(RECOVERY_ALPHABET[rng.random_range(0..RECOVERY_ALPHABET.len())] as char);
    }
    code
}

/// Percent-encodes the account name of the key URI label.
fn uri_component(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts TOTP enrolment: a new secret for the caller's authenticator app.
/// Nothing changes at sign-in until the secret is confirmed with a code;
/// enrolling again before that replaces the secret.
#[utoipa::path(
    post, path = "/v1/users/me/mfa/totp", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = MfaEnrollment),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 403, description = "API keys cannot manage MFA", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`mfa_already_enabled`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn enroll_totp(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
) -> ApiResult<(StatusCode, axum::Json<MfaEnrollment>)> {
    let mut tx = identity.db().begin().await?;
    let user = users::lock_active(&mut tx, caller.user_id).await?;
    let (email, enabled) = (user.email, user.mfa_enabled);
    if enabled {
        return Err(ApiError::conflict(
            codes::MFA_ALREADY_ENABLED,
            "MFA is already on; turn it off first to enrol a new authenticator",
        ));
    }
    let mut secret = [0u8; 20];
    rand::rng().fill(&mut secret[..]);
    sqlx::query(
        "INSERT INTO mfa_factors (user_id, secret_ciphertext) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET secret_ciphertext = EXCLUDED.secret_ciphertext,
             confirmed_at = NULL, last_used_step = NULL, created_at = now()",
    )
    .bind(caller.user_id)
    .bind(identity.cipher().encrypt(SECRET_CONTEXT, &secret))
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &context,
        "mfa.enrolled",
        "user",
        caller.user_id,
        json!({"method": "totp"}),
    )
    .await?;
    tx.commit().await?;
    let secret = totp::base32_encode(&secret);
    let account = email.unwrap_or_else(|| caller.user_id.to_string());
    let otpauth_uri = format!(
        "otpauth://totp/{ISSUER}:{}?secret={secret}&issuer={ISSUER}&algorithm=SHA1&digits={}&period={}",
        uri_component(&account),
        totp::DIGITS,
        totp::PERIOD_SECS,
    );
    Ok((
        StatusCode::CREATED,
        axum::Json(MfaEnrollment {
            object: "mfa_enrollment",
            secret,
            otpauth_uri,
        }),
    ))
}

/// Confirms the enrolled secret with a current code and turns MFA on. The
/// response carries ten one-time recovery codes, shown only this once.
#[utoipa::path(
    post, path = "/v1/users/me/mfa/totp/confirm", tag = "users",
    security(("bearer" = [])),
    request_body = MfaCode,
    responses(
        (status = 200, description = "OK", body = MfaStatus),
        (status = 400, description = "`invalid_mfa_code` or `validation_failed`", body = rentify_platform::error::ErrorEnvelope),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 403, description = "API keys cannot manage MFA", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`mfa_already_enabled` or `mfa_not_enrolled`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn confirm_totp(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
    ValidJson(input): ValidJson<MfaCode>,
) -> ApiResult<axum::Json<MfaStatus>> {
    let mut tx = identity.db().begin().await?;
    let enabled = users::lock_active(&mut tx, caller.user_id)
        .await?
        .mfa_enabled;
    if enabled {
        return Err(ApiError::conflict(
            codes::MFA_ALREADY_ENABLED,
            "MFA is already on",
        ));
    }
    let pending: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM mfa_factors WHERE user_id = $1 AND confirmed_at IS NULL)",
    )
    .bind(caller.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if !pending {
        return Err(ApiError::conflict(
            codes::MFA_NOT_ENROLLED,
            "no enrolment to confirm; start one with POST /v1/users/me/mfa/totp",
        ));
    }
    if !use_totp(&identity, &mut tx, caller.user_id, &input.code, false).await? {
        return Err(invalid_code());
    }
    sqlx::query("UPDATE mfa_factors SET confirmed_at = now() WHERE user_id = $1")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE users SET mfa_enabled = true, updated_at = now() WHERE id = $1")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    let mut recovery_codes = Vec::with_capacity(RECOVERY_CODES);
    while recovery_codes.len() < RECOVERY_CODES {
        let code = new_recovery_code();
        let inserted = sqlx::query(
            "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(caller.user_id)
        .bind(sha256(&normalize_recovery_code(&code)))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            recovery_codes.push(code);
        }
    }
    audit::record(
        &mut tx,
        &context,
        "mfa.enabled",
        "user",
        caller.user_id,
        json!({"method": "totp", "recovery_codes": RECOVERY_CODES}),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(MfaStatus {
        object: "mfa_status",
        enabled: true,
        recovery_codes: Some(recovery_codes),
    }))
}

/// Turns MFA off with a current code or a recovery code: the secret and the
/// recovery codes are deleted and pending login challenges stop working.
#[utoipa::path(
    delete, path = "/v1/users/me/mfa", tag = "users",
    security(("bearer" = [])),
    request_body = MfaCode,
    responses(
        (status = 200, description = "OK", body = MfaStatus),
        (status = 400, description = "`invalid_mfa_code` or `validation_failed`", body = rentify_platform::error::ErrorEnvelope),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
        (status = 403, description = "API keys cannot manage MFA", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`mfa_not_enabled`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn disable_mfa(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
    ValidJson(input): ValidJson<MfaCode>,
) -> ApiResult<axum::Json<MfaStatus>> {
    let mut tx = identity.db().begin().await?;
    let enabled = users::lock_active(&mut tx, caller.user_id)
        .await?
        .mfa_enabled;
    if !enabled {
        return Err(ApiError::conflict(codes::MFA_NOT_ENABLED, "MFA is not on"));
    }
    let is_totp = input.code.trim().len() == totp::DIGITS
        && input.code.trim().bytes().all(|b| b.is_ascii_digit());
    let method = if is_totp {
        if !use_totp(&identity, &mut tx, caller.user_id, &input.code, true).await? {
            return Err(invalid_code());
        }
        "totp"
    } else {
        if !use_recovery_code(&mut tx, caller.user_id, &input.code).await? {
            return Err(invalid_code());
        }
        let remaining = remaining_recovery_codes(&mut tx, caller.user_id).await?;
        audit::record(
            &mut tx,
            &context,
            "mfa.recovery_code_used",
            "user",
            caller.user_id,
            json!({"remaining": remaining}),
        )
        .await?;
        "recovery_code"
    };
    for statement in [
        "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
        "DELETE FROM mfa_factors WHERE user_id = $1",
        "UPDATE mfa_challenges SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
        "UPDATE users SET mfa_enabled = false, updated_at = now() WHERE id = $1",
    ] {
        sqlx::query(statement)
            .bind(caller.user_id)
            .execute(&mut *tx)
            .await?;
    }
    audit::record(
        &mut tx,
        &context,
        "mfa.disabled",
        "user",
        caller.user_id,
        json!({"method": method}),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(MfaStatus {
        object: "mfa_status",
        enabled: false,
        recovery_codes: None,
    }))
}

#[derive(sqlx::FromRow)]
struct ChallengeRow {
    id: Uuid,
    user_id: Uuid,
    attempts: i32,
    live: bool,
}

/// Completes a sign-in that answered `mfa_required`: the challenge with a
/// current authenticator code or a recovery code. The challenge works once;
/// each wrong code counts, and after five (or five minutes) it is dead:
/// sign in with the password again.
#[utoipa::path(
    post, path = "/v1/auth/mfa", tag = "auth",
    request_body = CompleteMfa,
    responses(
        (status = 200, description = "OK", body = Session),
        (status = 400, description = "`validation_failed`", body = rentify_platform::error::ErrorEnvelope),
        (status = 401, description = "`invalid_mfa_code` (counts an attempt) or `invalid_mfa_challenge`", body = rentify_platform::error::ErrorEnvelope),
        (status = 429, description = "`rate_limited`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn complete_challenge(
    Extension(identity): Extension<Identity>,
    context: AuditContext,
    ValidJson(input): ValidJson<CompleteMfa>,
) -> ApiResult<axum::Json<Session>> {
    let (code, factor) = match (&input.code, &input.recovery_code) {
        (Some(code), None) => (code, "totp"),
        (None, Some(code)) => (code, "recovery_code"),
        _ => {
            return Err(ApiError::invalid_field(
                "code",
                "required",
                "send exactly one of `code` and `recovery_code`",
            ));
        }
    };
    let mut tx = identity.db().begin().await?;
    let challenge: Option<ChallengeRow> = sqlx::query_as(
        "SELECT id, user_id, attempts, (used_at IS NULL AND expires_at > now()) AS live
         FROM mfa_challenges WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(sha256(&input.challenge))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(challenge) = challenge.filter(|c| c.live && c.attempts < MAX_ATTEMPTS) else {
        return Err(invalid_challenge());
    };
    let user_id = challenge.user_id;
    let enabled = users::lock_active(&mut tx, user_id)
        .await
        .map_err(|_| invalid_challenge())?
        .mfa_enabled;
    if !enabled {
        return Err(invalid_challenge());
    }
    let context = context.as_user(user_id);
    let accepted = match factor {
        "totp" => use_totp(&identity, &mut tx, user_id, code, true).await?,
        _ => use_recovery_code(&mut tx, user_id, code).await?,
    };
    if !accepted {
        let attempts = challenge.attempts + 1;
        sqlx::query("UPDATE mfa_challenges SET attempts = $2 WHERE id = $1")
            .bind(challenge.id)
            .bind(attempts)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            &context,
            "session.mfa_failed",
            "user",
            user_id,
            json!({"method": factor, "attempts": attempts}),
        )
        .await?;
        tx.commit().await?;
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::INVALID_MFA_CODE,
            "the code is wrong, expired or was already used",
        )
        .with_detail(json!({"attempts_remaining": MAX_ATTEMPTS - attempts})));
    }
    sqlx::query("UPDATE mfa_challenges SET used_at = now() WHERE id = $1")
        .bind(challenge.id)
        .execute(&mut *tx)
        .await?;
    if factor == "recovery_code" {
        let remaining = remaining_recovery_codes(&mut tx, user_id).await?;
        audit::record(
            &mut tx,
            &context,
            "mfa.recovery_code_used",
            "user",
            user_id,
            json!({"remaining": remaining}),
        )
        .await?;
    }
    audit::record(
        &mut tx,
        &context,
        "session.created",
        "user",
        user_id,
        json!({"method": "mfa", "factor": factor}),
    )
    .await?;
    let session = sessions::start_session(&identity, &mut tx, user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(session))
}

/// Creates the short-lived challenge a password login answers with when
/// MFA is on; the returned error is the 401 `mfa_required` response.
pub async fn start_challenge(
    _identity: &Identity,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<ApiError, IdentityError> {
    let token = format!("{CHALLENGE_PREFIX}{}", random_token(32));
    sqlx::query(
        "INSERT INTO mfa_challenges (id, token_hash, user_id, expires_at)
         VALUES ($1, $2, $3, now() + $4)",
    )
    .bind(new_id())
    .bind(sha256(&token))
    .bind(user_id)
    .bind(chrono::Duration::seconds(CHALLENGE_TTL_SECS))
    .execute(conn)
    .await?;
    Ok(ApiError::new(
        StatusCode::UNAUTHORIZED,
        codes::MFA_REQUIRED,
        "a second factor is required: complete the challenge at POST /v1/auth/mfa",
    )
    .with_detail(json!({
        "challenge": token,
        "expires_in": CHALLENGE_TTL_SECS,
        "methods": ["totp", "recovery_code"],
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn totp_matches_the_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B (8 digits there; the last 6 are the 6-digit code).
        for (time, expected) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(
                totp::code(RFC_SECRET, totp::step_at(time) as u64),
                expected,
                "{time}"
            );
        }
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(totp::base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(totp::base32_encode(b"f"), "MY");
        assert_eq!(totp::base32_decode("mzxw6ytboi").unwrap(), b"foobar");
        assert_eq!(totp::base32_decode("MZXW6===").unwrap(), b"foo");
        assert!(totp::base32_decode("M1").is_none());
        let secret: Vec<u8> = (0u8..20).collect();
        assert_eq!(
            totp::base32_decode(&totp::base32_encode(&secret)).unwrap(),
            secret
        );
    }

    #[test]
    fn codes_are_accepted_within_one_step_and_never_twice() {
        let now = 1_111_111_111;
        let step = totp::step_at(now);
        let code = |s: i64| totp::code(RFC_SECRET, s as u64);
        assert_eq!(
            matching_step(RFC_SECRET, &code(step), now, None),
            Some(step)
        );
        assert_eq!(
            matching_step(RFC_SECRET, &code(step - 1), now, None),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(RFC_SECRET, &code(step + 1), now, None),
            Some(step + 1)
        );
        assert_eq!(matching_step(RFC_SECRET, &code(step - 2), now, None), None);
        assert_eq!(matching_step(RFC_SECRET, &code(step + 2), now, None), None);
        assert_eq!(
            matching_step(RFC_SECRET, &code(step), now, Some(step)),
            None
        );
        assert_eq!(
            matching_step(RFC_SECRET, &code(step), now, Some(step - 1)),
            Some(step)
        );
        assert_eq!(matching_step(RFC_SECRET, "12345", now, None), None);
        assert_eq!(matching_step(RFC_SECRET, "abcdef", now, None), None);
    }

    #[test]
    fn recovery_codes_are_normalised_for_hashing() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        assert_eq!(
            normalize_recovery_code(&code.to_uppercase()),
            normalize_recovery_code(&code)
        );
        assert_eq!(normalize_recovery_code(" Ab-Cd "), "abcd");
    }
}
