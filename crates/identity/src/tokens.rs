//! Access tokens: Ed25519-signed JWTs (EdDSA) with a `kid`, verifiable by
//! any service from the public keys at `/.well-known/jwks.json`.
//!
//! Signing keys live in PostgreSQL (private half encrypted with the PII key)
//! so every replica signs with the same key and a restart keeps tokens
//! valid. The first process to start creates one.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use ed25519_dalek::{SigningKey, pkcs8::EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use rentify_platform::{ApiError, auth::Role, config::Config};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::crypto::FieldCipher;

const KEY_CONTEXT: &str = "signing_keys.private_key";
/// How often a process re-reads the signing keys on its own.
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    /// The refresh-token family (sign-in) this token belongs to.
    pub sid: Uuid,
    pub roles: BTreeSet<Role>,
}

struct Verifier {
    key: DecodingKey,
}

/// The signing key and every known verification key.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    cipher: FieldCipher,
    issuer: String,
    audience: String,
    ttl: Duration,
    signing: RwLock<(String, EncodingKey)>,
    verifiers: RwLock<HashMap<String, Arc<Verifier>>>,
    jwks: RwLock<Jwks>,
    last_reload: RwLock<Instant>,
}

/// `/.well-known/jwks.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One public key (RFC 8037 OKP key for Ed25519).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    /// base64url of the 32-byte public key.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    public_key: Vec<u8>,
    active: bool,
}

impl KeyRing {
    /// Loads the keys, creating the first one when there is none.
    pub async fn load(db: PgPool, cipher: FieldCipher, config: &Config) -> anyhow::Result<Self> {
        ensure_active_key(&db, &cipher).await?;
        let ring = Self {
            inner: Arc::new(Inner {
                db,
                cipher,
                issuer: config.jwt_issuer().to_owned(),
                audience: config.jwt_audience.clone(),
                ttl: Duration::from_secs(config.access_token_ttl_secs),
                // Replaced by the first `reload` (no kid is empty).
                signing: RwLock::new((String::new(), EncodingKey::from_secret(b""))),
                verifiers: RwLock::new(HashMap::new()),
                jwks: RwLock::new(Jwks::default()),
                last_reload: RwLock::new(Instant::now()),
            }),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Re-reads the keys (after a rotation by another process).
    ///
    /// Reads public keys only; the private key is fetched and decrypted
    /// only when the active key changed, so the JWKS route can call this on
    /// every request.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT kid, public_key, retired_at IS NULL AS active FROM signing_keys ORDER BY created_at DESC",
        )
        .fetch_all(&self.inner.db)
        .await?;
        let mut verifiers = HashMap::new();
        let mut jwks = Jwks::default();
        for row in &rows {
            let x = URL_SAFE_NO_PAD.encode(&row.public_key);
            let key = DecodingKey::from_ed_components(&x)?;
            verifiers.insert(row.kid.clone(), Arc::new(Verifier { key }));
            jwks.keys.push(Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x,
                kid: row.kid.clone(),
                alg: "EdDSA".into(),
                use_: "sig".into(),
            });
        }
        let active = rows
            .iter()
            .find(|row| row.active)
            .map(|row| row.kid.clone())
            .ok_or_else(|| anyhow::anyhow!("no active signing key"))?;
        if self.inner.signing.read().expect("lock").0 != active {
            let sealed: Vec<u8> = sqlx::query_scalar(
                "SELECT private_key_ciphertext FROM signing_keys WHERE kid = $1",
            )
            .bind(&active)
            .fetch_one(&self.inner.db)
            .await?;
            let der = self
                .inner
                .cipher
                .decrypt(KEY_CONTEXT, &sealed)
                .map_err(|e| anyhow::anyhow!("signing key {active}: {e}"))?;
            *self.inner.signing.write().expect("lock") = (active, EncodingKey::from_ed_der(&der));
        }
        *self.inner.verifiers.write().expect("lock") = verifiers;
        *self.inner.jwks.write().expect("lock") = jwks;
        *self.inner.last_reload.write().expect("lock") = Instant::now();
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    pub fn jwks(&self) -> Jwks {
        self.inner.jwks.read().expect("lock").clone()
    }

    /// Signs an access token for `user_id` in sign-in `session_id`.
    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        roles: BTreeSet<Role>,
    ) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: self.inner.issuer.clone(),
            aud: self.inner.audience.clone(),
            sub: user_id,
            iat: now,
            exp: now + self.inner.ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
            sid: session_id,
            roles,
        };
        let signing = self.inner.signing.read().expect("lock");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signing.0.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &signing.1)?)
    }

    /// Verifies signature (EdDSA only: `none` and algorithm confusion are
    /// refused), `kid`, expiry, issuer and audience.
    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let invalid =
            || rentify_platform::auth::invalid_token("the access token is invalid or expired");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid());
        }
        let kid = header.kid.ok_or_else(invalid)?;
        // Pick up rotations by other processes every few minutes, so all
        // replicas soon sign with the newest key.
        let age = self.inner.last_reload.read().expect("lock").elapsed();
        if age > KEY_REFRESH_INTERVAL
            && let Err(error) = self.reload().await
        {
            tracing::warn!(%error, "could not refresh signing keys; using the loaded ones");
        }
        let verifier = match self.verifier(&kid) {
            Some(v) => v,
            None => {
                // A key created by another replica since we loaded: reload,
                // at most once a minute so bad kids cannot hammer the database.
                let stale = self.inner.last_reload.read().expect("lock").elapsed()
                    > Duration::from_secs(60);
                if stale {
                    self.reload().await.map_err(ApiError::internal)?;
                }
                self.verifier(&kid).ok_or_else(invalid)?
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[&self.inner.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        jsonwebtoken::decode::<Claims>(token, &verifier.key, &validation)
            .map(|data| data.claims)
            .map_err(|_| invalid())
    }

    fn verifier(&self, kid: &str) -> Option<Arc<Verifier>> {
        self.inner.verifiers.read().expect("lock").get(kid).cloned()
    }

    /// Adds a new signing key and retires the current one; tokens signed
    /// by retired keys stay verifiable until they expire.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        let mut tx = self.inner.db.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(74110003)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL")
            .execute(&mut *tx)
            .await?;
        let kid = insert_key(&mut tx, &self.inner.cipher).await?;
        tx.commit().await?;
        self.reload().await?;
        Ok(kid)
    }
}

async fn ensure_active_key(db: &PgPool, cipher: &FieldCipher) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(74110003)")
        .execute(&mut *tx)
        .await?;
    let active: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL)")
            .fetch_one(&mut *tx)
            .await?;
    if !active {
        let kid = insert_key(&mut tx, cipher).await?;
        tracing::info!(kid, "created the first access-token signing key");
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    cipher: &FieldCipher,
) -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let der = key
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("encode signing key: {e}"))?;
    let public = key.verifying_key().to_bytes();
    let kid = format!("ed25519-{}", Uuid::now_v7().simple());
    sqlx::query(
        "INSERT INTO signing_keys (kid, algorithm, private_key_ciphertext, public_key) VALUES ($1, 'EdDSA', $2, $3)",
    )
    .bind(&kid)
    .bind(cipher.encrypt(KEY_CONTEXT, der.as_bytes()))
    .bind(public.as_slice())
    .execute(&mut **tx)
    .await?;
    Ok(kid)
}
