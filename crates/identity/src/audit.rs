//! The audit log: an append-only record (the database refuses UPDATE and
//! DELETE) of sensitive reads and every mutation of identity data, with who
//! did it, when, and the request id that ties it to the logs.

use axum::{extract::FromRequestParts, http::request::Parts};
use chrono::{DateTime, Utc};
use rentify_platform::{
    auth::{Credential, Principal},
    ids::new_id,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Who acted, and in which request: extracted from every identity request.
#[derive(Clone, Debug)]
pub struct AuditContext {
    pub actor_kind: &'static str,
    pub actor_id: Option<Uuid>,
    pub request_id: Option<String>,
}

impl AuditContext {
    /// Someone acting without a session (registering, signing in): the
    /// account they act on is recorded as the actor once known.
    pub fn as_user(&self, user_id: Uuid) -> Self {
        Self {
            actor_kind: "user",
            actor_id: Some(user_id),
            request_id: self.request_id.clone(),
        }
    }

    /// A background or external actor (KYC provider, operator command).
    pub fn system(kind: &'static str) -> Self {
        Self {
            actor_kind: kind,
            actor_id: None,
            request_id: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuditContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (actor_kind, actor_id) = match parts.extensions.get::<Principal>() {
            Some(Principal {
                credential: Credential::ApiKey { key_id },
                ..
            }) => ("api_key", Some(*key_id)),
            Some(principal) => ("user", Some(principal.user_id)),
            None => ("anonymous", None),
        };
        Ok(Self {
            actor_kind,
            actor_id,
            request_id,
        })
    }
}

/// Appends one entry, inside the caller's transaction so the record exists
/// if and only if the change does.
pub async fn record(
    conn: &mut sqlx::PgConnection,
    context: &AuditContext,
    action: &str,
    subject_type: &str,
    subject_id: impl ToString,
    metadata: serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, actor_kind, actor_id, action, subject_type, subject_id, request_id, metadata)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id())
    .bind(context.actor_kind)
    .bind(context.actor_id)
    .bind(action)
    .bind(subject_type)
    .bind(subject_id.to_string())
    .bind(&context.request_id)
    .bind(metadata)
    .execute(conn)
    .await?;
    Ok(())
}

/// One audit entry as admins see it.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct AuditEntry {
    pub id: Uuid,
    #[sqlx(skip)]
    #[schema(example = "audit_entry")]
    pub object: &'static str,
    pub occurred_at: DateTime<Utc>,
    /// `user`, `api_key`, `operator`, `provider`, `system` or `anonymous`.
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    /// What happened, e.g. `user.updated`, `user.data_exported`.
    pub action: String,
    pub subject_type: String,
    pub subject_id: Option<String>,
    pub request_id: Option<String>,
    pub metadata: serde_json::Value,
}
