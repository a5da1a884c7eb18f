//! `Idempotency-Key` for state-changing POSTs, with Stripe's semantics.
//!
//! The handler opens its transaction, calls [`begin`], does its work on the
//! same transaction and finishes with [`Pending::complete`], which stores the
//! response next to the effect before the caller commits. So:
//!
//! * a retry with the same key and body replays the first status and body
//!   (header `Idempotent-Replayed: true`) without running the effect again;
//! * the same key with another method, path or body → 422
//!   `idempotency_key_reused`;
//! * a request whose key is held by a transaction still running → 409
//!   `idempotency_key_in_progress` (a transaction-scoped advisory lock, so a
//!   crash releases it);
//! * an error rolls everything back, key included, so the retry runs again.
//!
//! Keys live `IDEMPOTENCY_TTL_HOURS` (24 h); a job purges older ones.

use axum::{
    Json,
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::{ApiError, codes};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The request's `Idempotency-Key`, when it sent one.
#[derive(Clone, Debug, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "Idempotency-Key",
                    "invalid_header",
                    "must be 1 to 255 visible ASCII characters",
                )
            })?;
        Ok(Self(Some(key.to_string())))
    }
}

impl IdempotencyKey {
    /// For routes where a retry without a key would be dangerous (bookings).
    pub fn required(self) -> Result<String, ApiError> {
        self.0.ok_or_else(|| {
            ApiError::invalid_field(
                "Idempotency-Key",
                "required",
                "this request requires an `Idempotency-Key` header",
            )
        })
    }
}

/// What identifies one logical request.
#[derive(Debug)]
pub struct Scope<'a> {
    /// Whose key space: the user id, or e.g. `anon:<ip>` before sign-in.
    pub principal: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// The parsed request body (or any value that captures the input).
    pub body: &'a serde_json::Value,
}

/// Outcome of [`begin`].
#[derive(Debug)]
pub enum Begin {
    /// The key was seen before with this very request: send this response.
    Replay(Response),
    /// Do the work, then call [`Pending::complete`] on the same transaction.
    Proceed(Pending),
}

/// A request whose response is still to be recorded.
#[derive(Debug)]
#[must_use = "complete() stores the response under the key"]
pub struct Pending {
    stored: Option<StoredKey>,
}

#[derive(Debug)]
struct StoredKey {
    principal: String,
    key: String,
    method: String,
    path: String,
    fingerprint: Vec<u8>,
}

/// Claims the key on `tx` (the caller's transaction) or answers the replay.
pub async fn begin(
    tx: &mut PgConnection,
    key: &IdempotencyKey,
    scope: Scope<'_>,
    ttl_hours: u32,
) -> Result<Begin, ApiError> {
    let Some(key) = key.0.as_deref() else {
        return Ok(Begin::Proceed(Pending { stored: None }));
    };
    let fingerprint = fingerprint(&scope);

    // The key's stored answer if it has one, otherwise the key's lock, in
    // one statement. A finished request's answer needs no lock, and
    // replaying it (or refusing another body) under one would hold the key
    // until this transaction's rollback reaches the database, which can be
    // after the client has its answer and sent its next request: that one
    // would be told 409 `idempotency_key_in_progress` for a key long done.
    let (stored, locked) = read_key(tx, scope.principal, key, ttl_hours, true).await?;
    if let Some(replay) = answer(stored, &fingerprint)? {
        return Ok(Begin::Replay(replay));
    }
    if !locked {
        return Err(key_in_progress());
    }

    // Looked up again under the lock: the holder may have committed its
    // answer between the first look and the lock.
    match lookup(tx, scope.principal, key, &fingerprint, ttl_hours).await? {
        Some(replay) => Ok(Begin::Replay(replay)),
        None => Ok(Begin::Proceed(Pending {
            stored: Some(StoredKey {
                principal: scope.principal.to_string(),
                key: key.to_string(),
                method: scope.method.to_string(),
                path: scope.path.to_string(),
                fingerprint,
            }),
        })),
    }
}

/// The stored answer to `key`: its replay when `fingerprint` matches, 422
/// `idempotency_key_reused` when the key served another request, `None`
/// when it is unused (or expired). [`begin`] calls it under the key's lock;
/// writers that claim keys inside a database function call it on their
/// error paths.
pub async fn lookup(
    conn: &mut PgConnection,
    principal: &str,
    key: &str,
    fingerprint: &[u8],
    ttl_hours: u32,
) -> Result<Option<Response>, ApiError> {
    let (stored, _) = read_key(conn, principal, key, ttl_hours, false).await?;
    answer(stored, fingerprint)
}

/// A key's unexpired stored answer (fingerprint, status, body) and, with
/// `lock` and no answer stored, whether the key's lock was taken. The lock
/// is the one `place_booking` takes for the same key.
async fn read_key(
    conn: &mut PgConnection,
    principal: &str,
    key: &str,
    ttl_hours: u32,
    lock: bool,
) -> sqlx::Result<(Option<(Vec<u8>, i16, serde_json::Value)>, bool)> {
    let (fingerprint, status, body, locked): (
        Option<Vec<u8>>,
        Option<i16>,
        Option<serde_json::Value>,
        Option<bool>,
    ) = sqlx::query_as(
        "SELECT k.fingerprint, k.response_status, k.response_body,
                CASE WHEN k.key IS NULL AND $4 THEN
                     pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 7411)) END
           FROM (SELECT) AS one
           LEFT JOIN idempotency_keys k
             ON k.principal = $1 AND k.key = $2
            AND k.created_at > now() - make_interval(hours => $3)",
    )
    .bind(principal)
    .bind(key)
    .bind(ttl_hours as i32)
    .bind(lock)
    .fetch_one(conn)
    .await?;
    let stored = match (fingerprint, status, body) {
        (Some(fingerprint), Some(status), Some(body)) => Some((fingerprint, status, body)),
        _ => None,
    };
    Ok((stored, locked == Some(true)))
}

/// What a stored key says to a request with `fingerprint`: its replay, or
/// 422 when the key served another request; `None` for an unused key.
fn answer(
    stored: Option<(Vec<u8>, i16, serde_json::Value)>,
    fingerprint: &[u8],
) -> Result<Option<Response>, ApiError> {
    match stored {
        Some((stored, _, _)) if stored != fingerprint => Err(key_reused()),
        Some((_, status, body)) => Ok(Some(replay(status, body))),
        None => Ok(None),
    }
}

/// The replay of a stored response: its status and body, marked with
/// `Idempotent-Replayed: true`.
pub fn replay(status: i16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// The error for a key already used with another request (422).
pub fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        codes::IDEMPOTENCY_KEY_REUSED,
        "this Idempotency-Key was already used with a different request; use a new key",
    )
}

/// The error for a key held by a request still running (409).
pub fn key_in_progress() -> ApiError {
    ApiError::conflict(
        codes::IDEMPOTENCY_KEY_IN_PROGRESS,
        "a request with this Idempotency-Key is still being processed; retry shortly",
    )
    .with_retry_after(1)
}

impl Pending {
    /// Stores the response under the key (same transaction) and returns it.
    /// The caller commits afterwards.
    pub async fn complete<T: Serialize>(
        self,
        tx: &mut PgConnection,
        status: StatusCode,
        body: &T,
    ) -> Result<Response, ApiError> {
        let body = serde_json::to_value(body).map_err(ApiError::internal)?;
        if let Some(stored) = self.stored {
            // An expired row may still be there (the purge job runs hourly).
            sqlx::query(
                "INSERT INTO idempotency_keys (principal, key, method, path, fingerprint, response_status, response_body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (principal, key) DO UPDATE
                    SET method = EXCLUDED.method, path = EXCLUDED.path, fingerprint = EXCLUDED.fingerprint,
                        response_status = EXCLUDED.response_status, response_body = EXCLUDED.response_body,
                        created_at = now()",
            )
            .bind(&stored.principal)
            .bind(&stored.key)
            .bind(&stored.method)
            .bind(&stored.path)
            .bind(&stored.fingerprint)
            .bind(status.as_u16() as i16)
            .bind(&body)
            .execute(&mut *tx)
            .await?;
        }
        Ok((status, Json(body)).into_response())
    }
}

/// Deletes keys older than the TTL; run hourly by a job.
pub async fn purge_expired(conn: &mut PgConnection, ttl_hours: u32) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at <= now() - make_interval(hours => $1)",
    )
    .bind(ttl_hours as i32)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// SHA-256 over method, path and the canonical JSON of the body (object keys
/// sorted by `serde_json`'s map), so key order and whitespace do not matter.
/// Public for writers that claim keys inside a database function (booking
/// placement), which must fingerprint exactly as [`begin`] does.
pub fn fingerprint(scope: &Scope<'_>) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(scope.method.as_bytes());
    hasher.update([0]);
    hasher.update(scope.path.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(scope.body).unwrap_or_default());
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope<'a>(path: &'a str, body: &'a serde_json::Value) -> Scope<'a> {
        Scope {
            principal: "u1",
            method: "POST",
            path,
            body,
        }
    }

    #[test]
    fn fingerprints_ignore_key_order_but_not_content_or_path() {
        let a = json!({"a": 1, "b": [1, 2]});
        let b: serde_json::Value = serde_json::from_str(r#"{ "b": [1,2], "a": 1 }"#).unwrap();
        let c = json!({"a": 2, "b": [1, 2]});
        assert_eq!(
            fingerprint(&scope("/v1/x", &a)),
            fingerprint(&scope("/v1/x", &b))
        );
        assert_ne!(
            fingerprint(&scope("/v1/x", &a)),
            fingerprint(&scope("/v1/x", &c))
        );
        assert_ne!(
            fingerprint(&scope("/v1/x", &a)),
            fingerprint(&scope("/v1/y", &a))
        );
    }
}
