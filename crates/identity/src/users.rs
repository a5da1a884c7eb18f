//! Accounts as their owner sees them (`/v1/users/me`), as the public sees
//! them (`/v1/users/{id}`), and preferences.

use rentify_platform::patch::double_option;
use std::collections::BTreeSet;

use axum::Extension;
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::{Role, UserCaller},
    extract::{Path, ValidJson},
};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Identity,
    audit::{self, AuditContext},
};

pub const PHONE_CONTEXT: &str = "users.phone";

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(get_me, update_me))
        .routes(routes!(update_preferences))
        .routes(routes!(get_user))
}

/// A point on the map.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, Validate, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Location {
    #[validate(range(min = -90.0, max = 90.0))]
    pub lat: f64,
    #[validate(range(min = -180.0, max = 180.0))]
    pub lng: f64,
}

/// `{avg, count}` over the reviews the user received.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RatingSummary {
    pub avg: Option<f64>,
    pub count: i64,
}

/// The account, as its owner (or an admin) sees it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    #[schema(example = "user")]
    pub object: &'static str,
    pub email: Option<String>,
    pub email_verified: bool,
    /// E.164; decrypted only in this private view (the owner, admins and
    /// `users:read` API keys, whose reads are audited).
    pub phone: Option<String>,
    pub phone_verified: bool,
    pub display_name: String,
    pub avatar_url: Option<String>,
    /// `unverified`, `pending`, `verified` or `rejected` (KYC).
    pub identity_status: String,
    pub roles: BTreeSet<Role>,
    pub location: Option<Location>,
    pub preferences: Preferences,
    pub rating_summary: RatingSummary,
    /// Rolling average time to answer a booking request, in seconds.
    pub response_time_avg_secs: Option<i64>,
    pub mfa_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What anyone may see about a user.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PublicProfile {
    pub id: Uuid,
    #[schema(example = "public_profile")]
    pub object: &'static str,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub rating_summary: RatingSummary,
    pub identity_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// Personalisation used by the feed and search ranking.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Category slugs the user likes, most liked first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(length(max = 50))]
    pub category_affinities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(nested)]
    pub budget: Option<Budget>,
    /// How far the user is willing to go, in kilometres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(range(min = 0.1, max = 1000.0))]
    pub max_distance_km: Option<f64>,
}

/// A price range in minor units.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
#[validate(schema(function = "budget_in_order"))]
pub struct Budget {
    #[validate(range(min = 0))]
    pub min: i64,
    #[validate(range(min = 0))]
    pub max: i64,
    #[validate(length(equal = 3))]
    pub currency: String,
}

fn budget_in_order(budget: &Budget) -> Result<(), validator::ValidationError> {
    if budget.min > budget.max {
        let mut error = validator::ValidationError::new("range");
        error.message = Some("`min` must not exceed `max`".into());
        return Err(error);
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: Uuid,
    pub email: Option<String>,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub password_hash: Option<String>,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub phone_ciphertext: Option<Vec<u8>>,
    pub phone_verified_at: Option<DateTime<Utc>>,
    pub identity_status: String,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub preferences: sqlx::types::Json<Preferences>,
    pub rating_summary: sqlx::types::Json<RatingSummary>,
    pub response_time_avg_secs: Option<f64>,
    pub status: String,
    pub failed_logins: i32,
    pub failed_window_start: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
    pub lockout_level: i32,
    pub mfa_enabled: bool,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserRow {
    pub fn roles(&self) -> BTreeSet<Role> {
        self.roles.iter().filter_map(|r| Role::parse(r)).collect()
    }

    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

const SELECT_USER: &str = "
    SELECT u.id, u.email, u.email_verified_at, u.password_hash, u.display_name, u.avatar_url,
           u.phone_ciphertext, u.phone_verified_at, u.identity_status,
           ST_Y(u.location::geometry) AS lat, ST_X(u.location::geometry) AS lng,
           u.preferences, u.rating_summary,
           EXTRACT(EPOCH FROM u.response_time_avg)::float8 AS response_time_avg_secs,
           u.status, u.failed_logins, u.failed_window_start, u.locked_until, u.lockout_level,
           u.mfa_enabled,
           COALESCE(ARRAY(SELECT role FROM user_roles r WHERE r.user_id = u.id ORDER BY role), '{}') AS roles,
           u.created_at, u.updated_at
    FROM users u";

pub(crate) async fn find_by_id(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!("{SELECT_USER} WHERE u.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// For update: locks the row (login counters, lockout).
pub(crate) async fn find_by_email_for_update(
    conn: &mut PgConnection,
    email: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!(
        "{SELECT_USER} WHERE u.email = $1 AND u.status = 'active' FOR UPDATE OF u"
    ))
    .bind(email)
    .fetch_optional(conn)
    .await
}

/// The caller's own account; 401 when the token's account is gone (erased).
pub(crate) async fn find_active(conn: &mut PgConnection, id: Uuid) -> Result<UserRow, ApiError> {
    active_or_gone(find_by_id(conn, id).await?)
}

/// [`find_active`], locking the row until the transaction ends, so one
/// change to the account (MFA, KYC, erasure) runs at a time.
pub(crate) async fn lock_active(conn: &mut PgConnection, id: Uuid) -> Result<UserRow, ApiError> {
    let row = sqlx::query_as(&format!("{SELECT_USER} WHERE u.id = $1 FOR UPDATE OF u"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    active_or_gone(row)
}

fn active_or_gone(row: Option<UserRow>) -> Result<UserRow, ApiError> {
    match row {
        Some(row) if row.is_active() => Ok(row),
        _ => Err(rentify_platform::auth::invalid_token(
            "the account of this token no longer exists",
        )),
    }
}

impl Identity {
    /// The private view of `row`, decrypting the phone.
    pub(crate) fn user_view(&self, row: &UserRow) -> Result<User, ApiError> {
        let phone = row
            .phone_ciphertext
            .as_deref()
            .map(|c| self.cipher().decrypt_string(PHONE_CONTEXT, c))
            .transpose()
            .map_err(ApiError::internal)?;
        Ok(User {
            id: row.id,
            object: "user",
            email: row.email.clone(),
            email_verified: row.email_verified_at.is_some(),
            phone,
            phone_verified: row.phone_verified_at.is_some(),
            display_name: row.display_name.clone(),
            avatar_url: row.avatar_url.clone(),
            identity_status: row.identity_status.clone(),
            roles: row.roles(),
            location: row.lat.zip(row.lng).map(|(lat, lng)| Location { lat, lng }),
            preferences: row.preferences.0.clone(),
            rating_summary: row.rating_summary.0.clone(),
            response_time_avg_secs: row.response_time_avg_secs.map(|s| s.round() as i64),
            mfa_enabled: row.mfa_enabled,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn public_view(row: &UserRow) -> PublicProfile {
    PublicProfile {
        id: row.id,
        object: "public_profile",
        display_name: row.display_name.clone(),
        avatar_url: row.avatar_url.clone(),
        rating_summary: row.rating_summary.0.clone(),
        identity_verified: row.identity_status == "verified",
        created_at: row.created_at,
    }
}

/// The caller's account.
#[utoipa::path(
    get, path = "/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = User),
        (status = 401, description = "`unauthenticated` or `invalid_token`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn get_me(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
) -> ApiResult<axum::Json<User>> {
    let mut conn = identity.db().acquire().await?;
    let row = find_active(&mut conn, caller.user_id).await?;
    Ok(axum::Json(identity.user_view(&row)?))
}

/// Fields of the profile a user may change. The phone changes through
/// `/v1/auth/verify-phone`, the email is fixed.
#[derive(Debug, Deserialize, Serialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    #[validate(length(min = 1, max = 80))]
    pub display_name: Option<String>,
    /// An https URL, or `null` to remove.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub avatar_url: Option<Option<String>>,
    /// Where the user is, or `null` to forget it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Location>)]
    pub location: Option<Option<Location>>,
}

fn check_update(input: &UpdateMe) -> ApiResult<()> {
    if let Some(Some(url)) = &input.avatar_url
        && (!url.starts_with("https://") || url.len() > 2048 || url.contains(char::is_whitespace))
    {
        return Err(ApiError::invalid_field(
            "avatar_url",
            "url",
            "must be an https URL of at most 2048 characters",
        ));
    }
    if let Some(Some(location)) = &input.location {
        location
            .validate()
            .map_err(rentify_platform::extract::validation_error)?;
    }
    Ok(())
}

/// Changes the caller's display name, avatar or location.
#[utoipa::path(
    patch, path = "/v1/users/me", tag = "users",
    security(("bearer" = [])),
    request_body = UpdateMe,
    responses(
        (status = 200, description = "OK", body = User),
        (status = 400, description = "`validation_failed`", body = rentify_platform::error::ErrorEnvelope),
        (status = 401, description = "Unauthenticated", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn update_me(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
    ValidJson(input): ValidJson<UpdateMe>,
) -> ApiResult<axum::Json<User>> {
    check_update(&input)?;
    let mut tx = identity.db().begin().await?;
    find_active(&mut tx, caller.user_id).await?;
    let (lat, lng, set_location) = match input.location {
        Some(Some(l)) => (Some(l.lat), Some(l.lng), true),
        Some(None) => (None, None, true),
        None => (None, None, false),
    };
    sqlx::query(
        "UPDATE users SET
            display_name = COALESCE($2, display_name),
            avatar_url = CASE WHEN $3 THEN $4 ELSE avatar_url END,
            location = CASE WHEN $5 THEN
                CASE WHEN $6::float8 IS NULL THEN NULL
                     ELSE ST_SetSRID(ST_MakePoint($7, $6), 4326)::geography END
                ELSE location END,
            updated_at = now()
         WHERE id = $1",
    )
    .bind(caller.user_id)
    .bind(&input.display_name)
    .bind(input.avatar_url.is_some())
    .bind(input.avatar_url.clone().flatten())
    .bind(set_location)
    .bind(lat)
    .bind(lng)
    .execute(&mut *tx)
    .await?;
    let changed: Vec<&str> = [
        input.display_name.as_ref().map(|_| "display_name"),
        input.avatar_url.as_ref().map(|_| "avatar_url"),
        input.location.as_ref().map(|_| "location"),
    ]
    .into_iter()
    .flatten()
    .collect();
    audit::record(
        &mut tx,
        &context,
        "user.updated",
        "user",
        caller.user_id,
        serde_json::json!({ "fields": changed }),
    )
    .await?;
    let row = find_active(&mut tx, caller.user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(identity.user_view(&row)?))
}

/// Replaces the given preference fields; absent fields keep their value.
#[utoipa::path(
    patch, path = "/v1/users/me/preferences", tag = "users",
    security(("bearer" = [])),
    request_body = Preferences,
    responses(
        (status = 200, description = "OK", body = User),
        (status = 400, description = "`validation_failed`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn update_preferences(
    Extension(identity): Extension<Identity>,
    caller: UserCaller,
    context: AuditContext,
    ValidJson(input): ValidJson<Preferences>,
) -> ApiResult<axum::Json<User>> {
    let patch = serde_json::to_value(&input).map_err(ApiError::internal)?;
    let mut tx = identity.db().begin().await?;
    find_active(&mut tx, caller.user_id).await?;
    sqlx::query(
        "UPDATE users SET preferences = preferences || $2, updated_at = now() WHERE id = $1",
    )
    .bind(caller.user_id)
    .bind(&patch)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &context,
        "user.preferences_updated",
        "user",
        caller.user_id,
        serde_json::json!({ "fields": patch.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()) }),
    )
    .await?;
    let row = find_active(&mut tx, caller.user_id).await?;
    tx.commit().await?;
    Ok(axum::Json(identity.user_view(&row)?))
}

/// Anyone's public profile: display name, avatar, ratings and whether their
/// identity is verified. Nothing private.
#[utoipa::path(
    get, path = "/v1/users/{id}", tag = "users",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "OK", body = PublicProfile),
        (status = 404, description = "Not found", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn get_user(
    Extension(identity): Extension<Identity>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<PublicProfile>> {
    let mut conn = identity.db().acquire().await?;
    match find_by_id(&mut conn, id).await? {
        Some(row) if row.is_active() => Ok(axum::Json(public_view(&row))),
        _ => Err(ApiError::not_found()),
    }
}
