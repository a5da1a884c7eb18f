//! Sign-up, sign-in and sessions.
//!
//! A session is a pair: a short-lived JWT access token and an opaque
//! refresh token (256 random bits, stored as SHA-256). Each refresh rotates
//! the refresh token within its *family* (one sign-in); presenting a
//! rotated token again means it was copied, so the whole family is revoked.

use std::{collections::BTreeSet, time::Duration};

use axum::{Extension, http::StatusCode};
use chrono::{DateTime, Utc};
use rentify_platform::{
    PlatformState,
    auth::Role,
    extract::ValidJson,
    ids::new_id,
    outbox::{self, NewEvent},
    ratelimit::{ClientIp, Group},
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
    crypto::{random_token, sha256},
    password,
    users::{self, User, UserRow},
};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(jwks))
}

/// What sign-up, sign-in and refresh return.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    #[schema(example = "session")]
    pub object: &'static str,
    pub user: User,
    /// JWT (EdDSA); send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Opaque; exchange at `/v1/auth/refresh` before it expires. Single use.
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct Register {
    #[validate(email, length(max = 254))]
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// At least 10 characters and hard to guess (zxcvbn score 3+).
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    #[validate(length(min = 1, max = 80))]
    #[schema(example = "Ada")]
    pub display_name: String,
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[validate(length(min = 1, max = 254))]
    pub email: String,
    #[validate(length(min = 1, max = 1024))]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[validate(length(min = 1, max = 256))]
    pub refresh_token: String,
}

/// Lower-cased and trimmed: emails compare case-insensitively.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Creates an account (role `renter`) and signs it in. A verification
/// link is sent to the email through the notification transport.
#[utoipa::path(
    post, path = "/v1/auth/register", tag = "auth",
    request_body = Register,
    responses(
        (status = 201, description = "Created", body = Session),
        (status = 400, description = "`validation_failed` or `weak_password`", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`email_taken`", body = rentify_platform::error::ErrorEnvelope),
        (status = 429, description = "`rate_limited` or `signup_velocity_exceeded`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn register(
    Extension(identity): Extension<Identity>,
    context: AuditContext,
    ClientIp(ip): ClientIp,
    ValidJson(input): ValidJson<Register>,
) -> Result<(StatusCode, axum::Json<Session>), IdentityError> {
    let email = normalize_email(&input.email);
    let local_part = email.split('@').next().unwrap_or_default().to_owned();
    if let Some(reason) =
        password::weakness(&input.password, &[&email, &local_part, &input.display_name])
    {
        return Err(IdentityError::WeakPassword(reason));
    }
    check_signup_velocity(&identity, &ip).await?;
    let hash = password::hash(input.password).await?;
    let mut tx = identity.db().begin().await?;
    let user_id = new_id();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(&email)
    .bind(&hash)
    .bind(input.display_name.trim())
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_email_key") => {
            return Err(IdentityError::EmailTaken);
        }
        other => other?,
    };
    grant_role(&mut tx, user_id, Role::Renter, None).await?;
    crate::verification::send_email_verification(&identity, &mut tx, user_id, &email).await?;
    let context = context.as_user(user_id);
    audit::record(
        &mut tx,
        &context,
        "user.registered",
        "user",
        user_id,
        serde_json::json!({}),
    )
    .await?;
    outbox::record(
        &mut tx,
        NewEvent {
            event_type: "user.registered",
            aggregate_type: "user",
            aggregate_id: user_id.to_string(),
            payload: serde_json::json!({ "user_id": user_id }),
        },
    )
    .await?;
    let session = start_session(&identity, &mut tx, user_id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// Sign-up velocity: accounts created per IP per day (`SIGNUP_VELOCITY`).
async fn check_signup_velocity(identity: &Identity, ip: &str) -> Result<(), IdentityError> {
    let Some(limiter) = identity.platform().limiter.as_ref() else {
        return Ok(());
    };
    match limiter.check(Group::Signup, &format!("ip:{ip}")).await {
        Ok(decision) if !decision.allowed => Err(IdentityError::SignupVelocity {
            retry_after_secs: decision
                .retry_after
                .unwrap_or(Duration::from_secs(3600))
                .as_secs()
                .max(1),
        }),
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::warn!(%error, "sign-up velocity store unavailable; allowing");
            Ok(())
        }
    }
}

pub(crate) async fn grant_role(
    conn: &mut PgConnection,
    user_id: Uuid,
    role: Role,
    granted_by: Option<Uuid>,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "INSERT INTO user_roles (user_id, role, granted_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(role.as_str())
    .bind(granted_by)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Signs in with email and password. Unknown emails and wrong passwords get
/// the same answer after the same work. Repeated failures lock the account
/// (423 `account_locked`, longer each time); with MFA on, the answer is 401
/// `mfa_required` with a challenge for `/v1/auth/mfa`.
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = Login,
    responses(
        (status = 200, description = "OK", body = Session),
        (status = 401, description = "`invalid_credentials` or `mfa_required`", body = rentify_platform::error::ErrorEnvelope),
        (status = 423, description = "`account_locked`, with `Retry-After`", body = rentify_platform::error::ErrorEnvelope),
        (status = 429, description = "`rate_limited`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn login(
    Extension(identity): Extension<Identity>,
    context: AuditContext,
    ValidJson(input): ValidJson<Login>,
) -> Result<axum::Json<Session>, IdentityError> {
    let email = normalize_email(&input.email);
    let mut tx = identity.db().begin().await?;
    let user = users::find_by_email_for_update(&mut tx, &email).await?;
    let Some(user) = user.filter(|u| u.password_hash.is_some()) else {
        // Same work as a real check, so timing does not reveal the account.
        let _ = password::verify(input.password, identity.dummy_hash().to_owned()).await;
        return Err(IdentityError::InvalidCredentials);
    };
    let now = Utc::now();
    if let Some(until) = user.locked_until.filter(|until| *until > now) {
        return Err(IdentityError::AccountLocked {
            retry_after_secs: secs_until(until, now),
        });
    }
    let hash = user.password_hash.clone().unwrap_or_default();
    let context = context.as_user(user.id);
    if !password::verify(input.password, hash).await? {
        let locked = record_failure(&identity, &mut tx, &user, now).await?;
        audit::record(
            &mut tx,
            &context,
            "session.login_failed",
            "user",
            user.id,
            serde_json::json!({ "locked_until": locked }),
        )
        .await?;
        tx.commit().await?;
        return Err(match locked {
            Some(until) => IdentityError::AccountLocked {
                retry_after_secs: secs_until(until, now),
            },
            None => IdentityError::InvalidCredentials,
        });
    }
    sqlx::query(
        "UPDATE users SET failed_logins = 0, failed_window_start = NULL, locked_until = NULL, lockout_level = 0 WHERE id = $1",
    )
    .bind(user.id)
    .execute(&mut *tx)
    .await?;
    if user.mfa_enabled {
        let challenge = crate::mfa::start_challenge(&identity, &mut tx, user.id).await?;
        tx.commit().await?;
        return Err(challenge.into());
    }
    audit::record(
        &mut tx,
        &context,
        "session.created",
        "user",
        user.id,
        serde_json::json!({"method": "password"}),
    )
    .await?;
    let session = start_session(&identity, &mut tx, user.id).await?;
    tx.commit().await?;
    Ok(axum::Json(session))
}

fn secs_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    ((until - now).num_milliseconds().max(0) as u64)
        .div_ceil(1000)
        .max(1)
}

/// How long the `level`-th lock lasts: 1, 5, 15, then 60 minutes.
pub fn lock_duration(level: i32) -> chrono::Duration {
    let minutes = match level {
        ..=1 => 1,
        2 => 5,
        3 => 15,
        _ => 60,
    };
    chrono::Duration::minutes(minutes)
}

/// Counts a failed password; returns the lock end when this failure locks.
async fn record_failure(
    identity: &Identity,
    conn: &mut PgConnection,
    user: &UserRow,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    let window = chrono::Duration::minutes(identity.config().lockout_window_mins as i64);
    let in_window = user
        .failed_window_start
        .is_some_and(|start| now - start < window);
    let (count, start) = if in_window {
        (
            user.failed_logins + 1,
            user.failed_window_start.unwrap_or(now),
        )
    } else {
        (1, now)
    };
    if count >= identity.config().lockout_threshold as i32 {
        let level = user.lockout_level + 1;
        let until = now + lock_duration(level);
        sqlx::query(
            "UPDATE users SET failed_logins = 0, failed_window_start = NULL, locked_until = $2, lockout_level = $3 WHERE id = $1",
        )
        .bind(user.id)
        .bind(until)
        .bind(level)
        .execute(conn)
        .await?;
        Ok(Some(until))
    } else {
        sqlx::query("UPDATE users SET failed_logins = $2, failed_window_start = $3 WHERE id = $1")
            .bind(user.id)
            .bind(count)
            .bind(start)
            .execute(conn)
            .await?;
        Ok(None)
    }
}

/// Starts a new sign-in (token family) for `user_id`: used after password,
/// MFA and external sign-in.
pub async fn start_session(
    identity: &Identity,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<Session, IdentityError> {
    let family_id = new_id();
    issue_pair(identity, conn, user_id, family_id, None).await
}

async fn issue_pair(
    identity: &Identity,
    conn: &mut PgConnection,
    user_id: Uuid,
    family_id: Uuid,
    parent_id: Option<Uuid>,
) -> Result<Session, IdentityError> {
    let refresh_token = format!("rt_{}", random_token(32));
    let ttl = chrono::Duration::days(identity.config().refresh_token_ttl_days as i64);
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, parent_id, expires_at)
         VALUES ($1, $2, $3, $4, $5, now() + $6)",
    )
    .bind(new_id())
    .bind(family_id)
    .bind(user_id)
    .bind(sha256(&refresh_token))
    .bind(parent_id)
    .bind(ttl)
    .execute(&mut *conn)
    .await?;
    let row = users::find_active(conn, user_id).await?;
    let user = identity.user_view(&row)?;
    let access_token = identity
        .keys()
        .issue(user_id, family_id, user.roles.clone())?;
    Ok(Session {
        object: "session",
        user,
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: identity.keys().ttl().as_secs(),
    })
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    id: Uuid,
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// The account still exists (not erased).
    user_active: bool,
}

async fn find_refresh(conn: &mut PgConnection, token: &str) -> sqlx::Result<Option<RefreshRow>> {
    sqlx::query_as(
        "SELECT t.id, t.family_id, t.user_id, t.expires_at, t.rotated_at, t.revoked_at,
                u.status = 'active' AS user_active
         FROM refresh_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 FOR UPDATE OF t",
    )
    .bind(sha256(token))
    .fetch_optional(conn)
    .await
}

pub(crate) async fn revoke_family(
    conn: &mut PgConnection,
    family_id: Uuid,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every refresh token of `user_id` (logout everywhere, erasure).
pub(crate) async fn revoke_all(
    conn: &mut PgConnection,
    user_id: Uuid,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Exchanges a refresh token for a new pair; the old one stops working.
/// A token that was already exchanged revokes its whole family: 401
/// `refresh_token_reused`.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "OK", body = Session),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn refresh(
    Extension(identity): Extension<Identity>,
    context: AuditContext,
    ValidJson(input): ValidJson<RefreshRequest>,
) -> Result<axum::Json<Session>, IdentityError> {
    let mut tx = identity.db().begin().await?;
    let row = find_refresh(&mut tx, &input.refresh_token)
        .await?
        .ok_or(IdentityError::InvalidRefreshToken)?;
    let context = context.as_user(row.user_id);
    if row.revoked_at.is_some() || row.expires_at <= Utc::now() {
        return Err(IdentityError::InvalidRefreshToken);
    }
    if row.rotated_at.is_some() {
        revoke_family(&mut tx, row.family_id, "reuse_detected").await?;
        audit::record(
            &mut tx,
            &context,
            "session.refresh_token_reused",
            "user",
            row.user_id,
            serde_json::json!({ "family_id": row.family_id }),
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(user.id = %row.user_id, family_id = %row.family_id, "refresh token reuse: family revoked");
        return Err(IdentityError::RefreshTokenReused);
    }
    if !row.user_active {
        return Err(IdentityError::InvalidRefreshToken);
    }
    sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE id = $1")
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
    let session = issue_pair(&identity, &mut tx, row.user_id, row.family_id, Some(row.id)).await?;
    tx.commit().await?;
    Ok(axum::Json(session))
}

/// Ends the sign-in the refresh token belongs to (its whole family).
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "`invalid_refresh_token`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn logout(
    Extension(identity): Extension<Identity>,
    context: AuditContext,
    ValidJson(input): ValidJson<RefreshRequest>,
) -> Result<StatusCode, IdentityError> {
    let mut tx = identity.db().begin().await?;
    let row = find_refresh(&mut tx, &input.refresh_token)
        .await?
        .ok_or(IdentityError::InvalidRefreshToken)?;
    revoke_family(&mut tx, row.family_id, "logout").await?;
    audit::record(
        &mut tx,
        &context.as_user(row.user_id),
        "session.revoked",
        "user",
        row.user_id,
        serde_json::json!({ "family_id": row.family_id }),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify access tokens (RFC 7517). Read fresh from
/// the database, so a rotation by any process shows at once.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "OK", body = crate::tokens::Jwks))
)]
pub async fn jwks(
    Extension(identity): Extension<Identity>,
) -> Result<axum::Json<crate::tokens::Jwks>, IdentityError> {
    identity.keys().reload().await?;
    Ok(axum::Json(identity.keys().jwks()))
}

/// An account at an external OpenID provider, as its verified ID token
/// describes it.
#[derive(Clone, Debug)]
pub struct ExternalProfile {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Signs in through an external identity: the linked account, else the
/// account with the same *verified* email (then linked), else a new one.
pub async fn sign_in_external(
    identity: &Identity,
    profile: ExternalProfile,
) -> Result<Session, IdentityError> {
    let mut tx = identity.db().begin().await?;
    let linked: Option<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2",
    )
    .bind(&profile.issuer)
    .bind(&profile.subject)
    .fetch_optional(&mut *tx)
    .await?;
    let email = profile.email.as_deref().map(normalize_email);
    let user_id = match linked {
        Some(user_id) => user_id,
        None => {
            let existing: Option<Uuid> = match (&email, profile.email_verified) {
                (Some(email), true) => {
                    sqlx::query_scalar(
                        "SELECT id FROM users WHERE email = $1 AND status = 'active'",
                    )
                    .bind(email)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                _ => None,
            };
            let user_id = match existing {
                Some(id) => id,
                None => create_external_user(&mut tx, &profile, email.as_deref()).await?,
            };
            sqlx::query(
                "INSERT INTO user_identities (issuer, subject, user_id, email) VALUES ($1, $2, $3, $4)",
            )
            .bind(&profile.issuer)
            .bind(&profile.subject)
            .bind(user_id)
            .bind(&email)
            .execute(&mut *tx)
            .await?;
            audit::record(
                &mut tx,
                &AuditContext::system("provider").as_user(user_id),
                "user.identity_linked",
                "user",
                user_id,
                serde_json::json!({ "issuer": profile.issuer }),
            )
            .await?;
            user_id
        }
    };
    let user = users::find_by_id(&mut tx, user_id).await?;
    if !user.is_some_and(|u| u.is_active()) {
        return Err(IdentityError::InvalidCredentials);
    }
    audit::record(
        &mut tx,
        &AuditContext::system("provider").as_user(user_id),
        "session.created",
        "user",
        user_id,
        serde_json::json!({ "method": "oidc", "issuer": profile.issuer }),
    )
    .await?;
    let session = start_session(identity, &mut tx, user_id).await?;
    tx.commit().await?;
    Ok(session)
}

async fn create_external_user(
    conn: &mut PgConnection,
    profile: &ExternalProfile,
    email: Option<&str>,
) -> Result<Uuid, IdentityError> {
    let user_id = new_id();
    let display_name = profile
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| email.and_then(|e| e.split('@').next()).map(str::to_owned))
        .unwrap_or_else(|| "New user".into());
    let display_name: String = display_name.trim().chars().take(80).collect();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, email_verified_at, display_name) VALUES ($1, $2, CASE WHEN $3 THEN now() END, $4)",
    )
    .bind(user_id)
    .bind(email)
    .bind(profile.email_verified)
    .bind(&display_name)
    .execute(&mut *conn)
    .await;
    match inserted {
        // An unverified email that another account owns: do not take it over.
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_email_key") => {
            return Err(IdentityError::EmailTaken);
        }
        other => other?,
    };
    grant_role(&mut *conn, user_id, Role::Renter, None).await?;
    outbox::record(
        conn,
        NewEvent {
            event_type: "user.registered",
            aggregate_type: "user",
            aggregate_id: user_id.to_string(),
            payload: serde_json::json!({ "user_id": user_id, "via": "oidc" }),
        },
    )
    .await?;
    Ok(user_id)
}

/// Roles of `user_id` now (access tokens carry a copy).
pub async fn current_roles(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<BTreeSet<Role>> {
    let roles: Vec<String> = sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(conn)
        .await?;
    Ok(roles.iter().filter_map(|r| Role::parse(r)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_escalate_and_cap() {
        let minutes: Vec<i64> = (1..=6).map(|l| lock_duration(l).num_minutes()).collect();
        assert_eq!(minutes, [1, 5, 15, 60, 60, 60]);
    }

    #[test]
    fn emails_compare_case_insensitively() {
        assert_eq!(normalize_email("  Ada@Example.COM "), "ada@example.com");
    }
}
