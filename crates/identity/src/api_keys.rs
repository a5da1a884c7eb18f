//! Scoped API keys for service-to-service calls.
//!
//! An admin creates a key with a name and scopes; the secret
//! (`rk_live_…`, 256 random bits) is shown once and stored as SHA-256, which
//! suffices for a high-entropy secret and keeps each request to one indexed
//! lookup. `Authorization: Bearer rk_live_…` authenticates with exactly the
//! key's scopes and no roles.

use std::collections::BTreeSet;

use axum::{Extension, http::StatusCode};
use chrono::{DateTime, Utc};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::{AdminCaller, Credential, Principal, invalid_token},
    extract::{Path, ValidJson},
    ids::new_id,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Identity,
    audit::{self, AuditContext},
    crypto::{random_token, sha256},
};

/// Every API key secret starts with this.
pub const PREFIX: &str = "rk_live_";

/// Scopes a key may hold. Routes that accept API keys check one of these.
pub const SCOPES: &[&str] = &[
    "users:read",
    "audit:read",
    "listings:read",
    "listings:write",
    "bookings:read",
    "bookings:write",
    "payments:read",
    "payments:write",
];

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    #[sqlx(skip)]
    #[schema(example = "api_key")]
    pub object: &'static str,
    pub name: String,
    /// The start of the secret, to recognise the key.
    #[schema(example = "rk_live_AbCd")]
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The secret: present only in the response that created the key.
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    #[validate(length(min = 1, max = 100))]
    pub name: String,
    #[validate(length(min = 1, max = 20))]
    pub scopes: Vec<String>,
}

const COLUMNS: &str = "id, name, prefix, scopes, created_by, created_at, last_used_at, revoked_at";

/// Creates a key; the response is the only time the secret is shown.
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "api_keys",
    security(("bearer" = [])),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Created", body = ApiKey),
        (status = 400, description = "`validation_failed` (unknown scope)", body = rentify_platform::error::ErrorEnvelope),
        (status = 403, description = "Forbidden", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn create_api_key(
    Extension(identity): Extension<Identity>,
    AdminCaller(admin): AdminCaller,
    context: AuditContext,
    ValidJson(input): ValidJson<NewApiKey>,
) -> ApiResult<(StatusCode, axum::Json<ApiKey>)> {
    if let Some((index, unknown)) = input
        .scopes
        .iter()
        .enumerate()
        .find(|(_, s)| !SCOPES.contains(&s.as_str()))
    {
        return Err(ApiError::invalid_field(
            &format!("scopes[{index}]"),
            "unknown_scope",
            format!(
                "`{unknown}` is not a scope; known scopes: {}",
                SCOPES.join(", ")
            ),
        ));
    }
    let scopes: Vec<String> = input
        .scopes
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let secret = format!("{PREFIX}{}", random_token(32));
    let mut tx = identity.db().begin().await?;
    let mut key: ApiKey = sqlx::query_as(&format!(
        "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(new_id())
    .bind(input.name.trim())
    .bind(&secret[..PREFIX.len() + 4])
    .bind(sha256(&secret))
    .bind(&scopes)
    .bind(admin.user_id)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &context,
        "api_key.created",
        "api_key",
        key.id,
        serde_json::json!({ "name": key.name, "scopes": key.scopes }),
    )
    .await?;
    tx.commit().await?;
    key.object = "api_key";
    key.secret = Some(secret);
    Ok((StatusCode::CREATED, axum::Json(key)))
}

/// Every key (without secrets), newest first.
#[utoipa::path(
    get, path = "/v1/api-keys", tag = "api_keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = rentify_platform::pagination::Page<ApiKey>),
        (status = 403, description = "Forbidden", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn list_api_keys(
    Extension(identity): Extension<Identity>,
    _admin: AdminCaller,
) -> ApiResult<axum::Json<rentify_platform::pagination::Page<ApiKey>>> {
    let keys: Vec<ApiKey> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC LIMIT 200"
    ))
    .fetch_all(identity.db())
    .await?;
    Ok(axum::Json(rentify_platform::pagination::Page {
        object: "list",
        data: keys
            .into_iter()
            .map(|mut k| {
                k.object = "api_key";
                k
            })
            .collect(),
        has_more: false,
        next_cursor: None,
    }))
}

/// Revokes a key; it stops authenticating at once.
#[utoipa::path(
    delete, path = "/v1/api-keys/{id}", tag = "api_keys",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "OK", body = ApiKey),
        (status = 403, description = "Forbidden", body = rentify_platform::error::ErrorEnvelope),
        (status = 404, description = "Not found", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn revoke_api_key(
    Extension(identity): Extension<Identity>,
    _admin: AdminCaller,
    context: AuditContext,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<ApiKey>> {
    let mut tx = identity.db().begin().await?;
    let mut key: ApiKey = sqlx::query_as(&format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(ApiError::not_found)?;
    audit::record(
        &mut tx,
        &context,
        "api_key.revoked",
        "api_key",
        id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    key.object = "api_key";
    Ok(axum::Json(key))
}

/// Resolves `rk_live_…` into its principal: one indexed read per request.
/// `last_used_at` is written at most once a minute per key, so busy keys do
/// not turn every request into a row update.
pub(crate) async fn authenticate(identity: &Identity, secret: &str) -> Result<Principal, ApiError> {
    let row: Option<(Uuid, Vec<String>, Uuid, bool)> = sqlx::query_as(
        "SELECT id, scopes, created_by,
                last_used_at IS NULL OR last_used_at < now() - interval '1 minute' AS stale
         FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
    )
    .bind(sha256(secret))
    .fetch_optional(identity.db())
    .await?;
    let (key_id, scopes, created_by, stale) =
        row.ok_or_else(|| invalid_token("the API key is invalid or revoked"))?;
    if stale {
        sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1")
            .bind(key_id)
            .execute(identity.db())
            .await?;
    }
    Ok(Principal {
        user_id: created_by,
        roles: BTreeSet::new(),
        scopes: Some(scopes.into_iter().collect()),
        credential: Credential::ApiKey { key_id },
    })
}
