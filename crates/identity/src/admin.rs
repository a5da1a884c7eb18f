//! Administration of identities: roles, the audit log, and the operator's
//! `rentify admin create`.

use axum::{Extension, extract::Query};
use rentify_platform::{
    ApiError, ApiResult, PlatformState,
    auth::{AdminCaller, Caller, Role},
    extract::{Path, ValidJson, ValidQuery},
    pagination::{Cursor, Page, PageParams},
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    Identity, IdentityError,
    audit::{self, AuditContext, AuditEntry},
    password,
    sessions::{self, normalize_email},
    users::{self, User},
};

/// Scope an API key needs to read accounts through the admin routes.
pub const SCOPE_USERS_READ: &str = "users:read";
/// Scope an API key needs to read the audit log.
pub const SCOPE_AUDIT_READ: &str = "audit:read";

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(get_user_as_admin))
        .routes(routes!(grant_role))
        .routes(routes!(revoke_role))
        .routes(routes!(list_audit_log))
}

/// 403 unless the caller is an admin, or an API key holding `scope`.
fn require_admin_or_scope(caller: &Caller, scope: &str) -> ApiResult<()> {
    match &caller.scopes {
        Some(_) => caller.require_scope(scope),
        None => caller.require_role(Role::Admin),
    }
}

/// Any account, private fields included. Each read is audited.
#[utoipa::path(
    get, path = "/v1/admin/users/{id}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "OK", body = User),
        (status = 403, description = "Forbidden", body = rentify_platform::error::ErrorEnvelope),
        (status = 404, description = "Not found", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn get_user_as_admin(
    Extension(identity): Extension<Identity>,
    caller: Caller,
    context: AuditContext,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<User>> {
    require_admin_or_scope(&caller, SCOPE_USERS_READ)?;
    let mut tx = identity.db().begin().await?;
    let row = users::find_by_id(&mut tx, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    audit::record(
        &mut tx,
        &context,
        "user.viewed_by_admin",
        "user",
        id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(identity.user_view(&row)?))
}

#[derive(Debug, Deserialize, ToSchema, Validate)]
#[serde(deny_unknown_fields)]
pub struct RoleGrant {
    pub role: Role,
}

/// Grants a role. New access tokens carry it; existing ones until they expire.
#[utoipa::path(
    post, path = "/v1/admin/users/{id}/roles", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = RoleGrant,
    responses(
        (status = 200, description = "OK", body = User),
        (status = 403, description = "Forbidden", body = rentify_platform::error::ErrorEnvelope),
        (status = 404, description = "Not found", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn grant_role(
    Extension(identity): Extension<Identity>,
    AdminCaller(admin): AdminCaller,
    context: AuditContext,
    Path(id): Path<Uuid>,
    ValidJson(input): ValidJson<RoleGrant>,
) -> ApiResult<axum::Json<User>> {
    let mut tx = identity.db().begin().await?;
    ensure_admin_now(&mut tx, admin.user_id).await?;
    let row = users::find_by_id(&mut tx, id).await?;
    if !row.as_ref().is_some_and(|r| r.is_active()) {
        return Err(ApiError::not_found());
    }
    if sessions::grant_role(&mut tx, id, input.role, Some(admin.user_id)).await? {
        audit::record(
            &mut tx,
            &context,
            "user.role_granted",
            "user",
            id,
            serde_json::json!({"role": input.role}),
        )
        .await?;
    }
    let row = users::find_active(&mut tx, id).await?;
    tx.commit().await?;
    Ok(axum::Json(identity.user_view(&row)?))
}

/// Revokes a role. `renter` is every account's base role and stays; an
/// admin cannot revoke their own `admin` role (so one always remains).
#[utoipa::path(
    delete, path = "/v1/admin/users/{id}/roles/{role}", tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("role" = Role, Path)),
    responses(
        (status = 200, description = "OK", body = User),
        (status = 403, description = "Forbidden", body = rentify_platform::error::ErrorEnvelope),
        (status = 404, description = "Not found", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`role_not_revocable`", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn revoke_role(
    Extension(identity): Extension<Identity>,
    AdminCaller(admin): AdminCaller,
    context: AuditContext,
    Path((id, role)): Path<(Uuid, Role)>,
) -> ApiResult<axum::Json<User>> {
    if role == Role::Renter {
        return Err(ApiError::conflict(
            "role_not_revocable",
            "`renter` is every account's base role",
        ));
    }
    if role == Role::Admin && id == admin.user_id {
        return Err(ApiError::conflict(
            "role_not_revocable",
            "an admin cannot revoke their own admin role",
        ));
    }
    let mut tx = identity.db().begin().await?;
    ensure_admin_now(&mut tx, admin.user_id).await?;
    let row = users::find_by_id(&mut tx, id).await?;
    if !row.as_ref().is_some_and(|r| r.is_active()) {
        return Err(ApiError::not_found());
    }
    let removed = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
        .bind(id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
    if removed.rows_affected() == 1 {
        audit::record(
            &mut tx,
            &context,
            "user.role_revoked",
            "user",
            id,
            serde_json::json!({"role": role}),
        )
        .await?;
    }
    let row = users::find_active(&mut tx, id).await?;
    tx.commit().await?;
    Ok(axum::Json(identity.user_view(&row)?))
}

/// Access tokens carry roles for 15 minutes; changing roles re-checks the
/// database so a just-revoked admin cannot grant anything.
async fn ensure_admin_now(conn: &mut sqlx::PgConnection, user_id: Uuid) -> ApiResult<()> {
    let roles = sessions::current_roles(conn, user_id).await?;
    if roles.contains(&Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::forbidden("this action requires the `admin` role"))
    }
}

#[derive(Debug, Deserialize, IntoParams, Validate)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries about this subject id (e.g. a user id).
    pub subject_id: Option<String>,
    /// Only entries by this actor.
    pub actor_id: Option<Uuid>,
    /// Only this action, e.g. `user.updated`.
    pub action: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(
    get, path = "/v1/admin/audit-log", tag = "admin",
    security(("bearer" = [])),
    params(AuditQuery, PageParams),
    responses(
        (status = 200, description = "OK", body = Page<AuditEntry>),
        (status = 403, description = "Forbidden", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn list_audit_log(
    Extension(identity): Extension<Identity>,
    caller: Caller,
    Query(filter): Query<AuditQuery>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> ApiResult<axum::Json<Page<AuditEntry>>> {
    require_admin_or_scope(&caller, SCOPE_AUDIT_READ)?;
    let after: Option<Cursor<i64>> = page.after()?;
    let rows: Vec<(i64, AuditEntry)> = sqlx::query_as::<_, AuditRow>(
        "SELECT position, id, occurred_at, actor_kind, actor_id, action, subject_type, subject_id, request_id, metadata
         FROM audit_log
         WHERE ($1::text IS NULL OR subject_id = $1)
           AND ($2::uuid IS NULL OR actor_id = $2)
           AND ($3::text IS NULL OR action = $3)
           AND ($4::bigint IS NULL OR position < $4)
         ORDER BY position DESC
         LIMIT $5",
    )
    .bind(&filter.subject_id)
    .bind(filter.actor_id)
    .bind(&filter.action)
    .bind(after.map(|c| c.key))
    .bind(page.fetch_limit())
    .fetch_all(identity.db())
    .await?
    .into_iter()
    .map(|row| (row.position, row.entry))
    .collect();
    let page = Page::from_rows(rows, &page, |(position, entry)| {
        Cursor::new(*position, entry.id)
    });
    Ok(axum::Json(page.map(|(_, mut entry)| {
        entry.object = "audit_entry";
        entry
    })))
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    position: i64,
    #[sqlx(flatten)]
    entry: AuditEntry,
}

/// `rentify admin create`: creates an admin account, or makes an existing
/// account admin (its password is then left unchanged). Returns the id.
pub async fn create_admin(
    identity: &Identity,
    email: &str,
    password_plain: &str,
    display_name: Option<&str>,
) -> Result<(Uuid, bool), IdentityError> {
    let email = normalize_email(email);
    if !validator::ValidateEmail::validate_email(&email) {
        return Err(ApiError::invalid_field("email", "email", "not an email address").into());
    }
    let mut tx = identity.db().begin().await?;
    let existing: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE email = $1 AND status = 'active'")
            .bind(&email)
            .fetch_optional(&mut *tx)
            .await?;
    let context = AuditContext::system("operator");
    let (user_id, created) = match existing {
        Some(id) => (id, false),
        None => {
            if let Some(reason) = password::weakness(password_plain, &[&email]) {
                return Err(IdentityError::WeakPassword(reason));
            }
            let id = insert_verified_account(
                &mut tx,
                &email,
                password_plain,
                display_name.unwrap_or("Administrator"),
                "operator",
            )
            .await?;
            (id, true)
        }
    };
    if sessions::grant_role(&mut tx, user_id, Role::Admin, None).await? {
        audit::record(
            &mut tx,
            &context,
            "user.role_granted",
            "user",
            user_id,
            serde_json::json!({"role": "admin"}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok((user_id, created))
}

/// Demo data: an account with `roles` (plus `renter`) and a verified email,
/// created once; later runs leave it as it is.
pub async fn ensure_demo_account(
    identity: &Identity,
    email: &str,
    password_plain: &str,
    display_name: &str,
    roles: &[Role],
) -> Result<Uuid, IdentityError> {
    let email = normalize_email(email);
    let mut tx = identity.db().begin().await?;
    let existing: Option<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
    let user_id = match existing {
        Some(id) => id,
        None => {
            insert_verified_account(&mut tx, &email, password_plain, display_name, "demo_seed")
                .await?
        }
    };
    for role in roles {
        sessions::grant_role(&mut tx, user_id, *role, None).await?;
    }
    tx.commit().await?;
    Ok(user_id)
}

/// An account created by an operator (or the demo seed) rather than by
/// signing up: email already verified, base role `renter`, audited.
async fn insert_verified_account(
    conn: &mut sqlx::PgConnection,
    email: &str,
    password_plain: &str,
    display_name: &str,
    via: &str,
) -> Result<Uuid, IdentityError> {
    let hash = password::hash(password_plain.to_owned()).await?;
    let id = rentify_platform::ids::new_id();
    sqlx::query(
        "INSERT INTO users (id, email, email_verified_at, password_hash, display_name) VALUES ($1, $2, now(), $3, $4)",
    )
    .bind(id)
    .bind(email)
    .bind(&hash)
    .bind(display_name)
    .execute(&mut *conn)
    .await?;
    sessions::grant_role(&mut *conn, id, Role::Renter, None).await?;
    audit::record(
        conn,
        &AuditContext::system("operator"),
        "user.registered",
        "user",
        id,
        serde_json::json!({ "via": via }),
    )
    .await?;
    Ok(id)
}
