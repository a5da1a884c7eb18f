//! Identity and access: who a caller is and what they may touch.
//!
//! - [`sessions`]: register, login (lockout, MFA challenge), refresh-token
//!   rotation with reuse detection, logout.
//! - [`tokens`]: Ed25519 JWT access tokens and the JWKS.
//! - [`users`]: profiles, preferences, public profiles.
//! - [`admin`]: roles, audit log, the operator's `admin create`.
//! - [`api_keys`]: scoped `rk_live_` keys for services.
//! - [`verification`], [`mfa`], [`kyc`], [`privacy`], [`oidc`].
//!
//! Handlers reach the module's services through `Extension<Identity>`; the
//! bearer-token verifier is registered on the platform state so every other
//! module authenticates through `rentify_platform::auth` alone.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod crypto;
pub mod delivery;
pub mod error;
pub mod kyc;
pub mod mfa;
pub mod oidc;
pub mod password;
pub mod privacy;
pub mod retention;
pub mod sessions;
pub mod tokens;
pub mod users;
pub mod verification;

use std::sync::Arc;

use rentify_platform::{
    ApiError, PlatformState,
    auth::{Authenticator, Credential, Principal},
    config::Config,
};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;

pub use error::IdentityError;

use crate::{
    crypto::{BlindIndex, FieldCipher},
    tokens::KeyRing,
};

/// The identity module's services, shared by its handlers.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    state: PlatformState,
    cipher: FieldCipher,
    blind_index: BlindIndex,
    keys: KeyRing,
    /// Verified instead of a real hash for unknown emails (equal timing).
    dummy_hash: String,
    /// Access tokens already verified, with their principal and expiry: an
    /// Ed25519 verification is the largest single cost of a small request,
    /// and a client sends the same token for up to its 15 minutes. Only
    /// tokens that verified are kept, never past their `exp`; the map is
    /// emptied when it reaches [`VERIFIED_TOKENS_MAX`].
    verified: std::sync::RwLock<std::collections::HashMap<String, (Principal, i64)>>,
}

/// Bound of the verified-token cache (about 1 KiB per entry).
const VERIFIED_TOKENS_MAX: usize = 50_000;

impl Identity {
    /// Loads keys (creating the first signing key) and registers the
    /// bearer-token verifier on `state`.
    pub async fn init(state: &PlatformState) -> anyhow::Result<Self> {
        let cipher = FieldCipher::from_config(&state.config)?;
        let blind_index = BlindIndex::from_config(&state.config)?;
        let keys = KeyRing::load(state.db.clone(), cipher.clone(), &state.config).await?;
        let dummy_hash = password::hash(crypto::random_token(24)).await?;
        let identity = Self {
            inner: Arc::new(Inner {
                state: state.clone(),
                cipher,
                blind_index,
                keys,
                dummy_hash,
                verified: Default::default(),
            }),
        };
        state.set_authenticator(Arc::new(identity.clone()));
        Ok(identity)
    }

    pub fn db(&self) -> &PgPool {
        &self.inner.state.db
    }

    pub fn config(&self) -> &Config {
        &self.inner.state.config
    }

    pub fn platform(&self) -> &PlatformState {
        &self.inner.state
    }

    pub fn cipher(&self) -> &FieldCipher {
        &self.inner.cipher
    }

    pub fn blind_index(&self) -> &BlindIndex {
        &self.inner.blind_index
    }

    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    pub(crate) fn dummy_hash(&self) -> &str {
        &self.inner.dummy_hash
    }
}

#[async_trait::async_trait]
impl Authenticator for Identity {
    async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        if token.starts_with(api_keys::PREFIX) {
            return api_keys::authenticate(self, token).await;
        }
        let now = chrono::Utc::now().timestamp();
        if let Some((principal, exp)) = self
            .inner
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            && *exp > now
        {
            return Ok(principal.clone());
        }
        let claims = self.keys().verify(token).await?;
        let principal = Principal {
            user_id: claims.sub,
            roles: claims.roles,
            scopes: None,
            credential: Credential::AccessToken {
                session_id: claims.sid,
            },
        };
        let mut verified = self
            .inner
            .verified
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_TOKENS_MAX {
            verified.clear();
        }
        verified.insert(token.to_owned(), (principal.clone(), claims.exp));
        Ok(principal)
    }
}

/// Every identity route with its OpenAPI description.
pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .merge(sessions::routes())
        .merge(users::routes())
        .merge(admin::routes())
        .merge(api_keys::routes())
        .merge(verification::routes())
        .merge(mfa::routes())
        .merge(kyc::routes())
        .merge(privacy::routes())
        .merge(oidc::routes())
}

/// Makes `user_id` an `owner` (idempotent); the listings module calls it in
/// the transaction that creates a user's first listing. Returns whether the
/// role is new. Access tokens carry the role from the next refresh.
pub async fn become_owner(
    conn: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
) -> sqlx::Result<bool> {
    sessions::grant_role(conn, user_id, rentify_platform::auth::Role::Owner, None).await
}

/// Whether `user_id`'s identity was verified by the KYC provider; listings
/// of unverified owners go to review before they are published.
pub async fn identity_verified(
    conn: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT identity_status = 'verified' FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await
        .map(|v| v.unwrap_or(false))
}

/// How to reach a user, revealed to the other party of an approved booking.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ContactDetails {
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl Identity {
    /// `user_id`'s email and (decrypted) phone; `None` for an unknown or
    /// erased account.
    pub async fn contact_details(
        &self,
        user_id: uuid::Uuid,
    ) -> Result<Option<ContactDetails>, ApiError> {
        let mut conn = self.db().acquire().await?;
        let row = users::find_by_id(&mut conn, user_id).await?;
        match row {
            Some(row) if row.is_active() => {
                let user = self.user_view(&row)?;
                Ok(Some(ContactDetails {
                    email: user.email,
                    phone: user.phone,
                }))
            }
            _ => Ok(None),
        }
    }
}
