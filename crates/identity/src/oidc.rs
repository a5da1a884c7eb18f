//! Sign-in with an external OpenID Connect provider: authorization code flow
//! with PKCE (S256), provider configured by `OIDC_ISSUER_URL`,
//! `OIDC_CLIENT_ID`, `OIDC_CLIENT_SECRET` and `OIDC_REDIRECT_URL`.
//!
//! 1. `GET /v1/auth/oidc/authorize` stores a fresh `state`, PKCE verifier and
//!    `nonce` in `oidc_logins` (10 minutes, single use) and redirects (302) to
//!    the provider's authorization endpoint, found by discovery.
//! 2. The provider sends the browser back to `GET /v1/auth/oidc/callback` with
//!    `code` and `state`. The state is consumed, the code exchanged at the token
//!    endpoint (with the verifier and the client secret), the ID token verified
//!    (signature against the provider's JWKS, `iss`, `aud`/`azp`, `exp`,
//!    `nonce`), missing `email`/`name` claims read from the userinfo endpoint,
//!    and [`sessions::sign_in_external`] links or creates the account.
//!
//! The protocol is written here on `reqwest` and `jsonwebtoken` rather than
//! with the `openidconnect` crate; docs/adr/0006-oidc-client.md says why.
//! Without `OIDC_ISSUER_URL` both endpoints answer 404 `not_found`: the
//! feature does not exist on that deployment.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    Extension,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{Jwk, PublicKeyUse},
};
use rentify_platform::{ApiError, PlatformState, config::Config, extract::ValidQuery};
use reqwest::Url;
use secrecy::ExposeSecret;
use serde::{Deserialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use validator::Validate;

use crate::{
    Identity, IdentityError,
    crypto::random_token,
    sessions::{self, ExternalProfile, Session},
};

/// Stable codes this flow adds (listed in docs/API-DESIGN.md).
pub mod codes {
    /// The callback's `state` is unknown, expired or already used.
    pub const INVALID_OIDC_STATE: &str = "invalid_oidc_state";
    /// The provider refused or failed the sign-in (`error=` on the callback,
    /// a rejected code, an ID token that does not verify).
    pub const OIDC_SIGN_IN_FAILED: &str = "oidc_sign_in_failed";
    /// The provider did not answer (discovery, token, JWKS or userinfo).
    pub const IDENTITY_PROVIDER_UNAVAILABLE: &str = "identity_provider_unavailable";
}

/// How long a started sign-in may take before its callback.
const LOGIN_TTL_MINS: i64 = 10;
/// How long discovery metadata and the JWKS are reused.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// A JWKS is refetched for an unknown `kid` at most this often.
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(30);
/// Clock skew allowed on the ID token's `exp`.
const LEEWAY_SECS: u64 = 60;
/// Asymmetric algorithms accepted for ID tokens (never `none` or HMAC).
const ID_TOKEN_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
        .routes(routes!(oidc_authorize))
        .routes(routes!(oidc_callback))
        .layer(Extension(OidcClient::default()))
}

/// 302 to the provider's sign-in page.
#[utoipa::path(
    get, path = "/v1/auth/oidc/authorize", tag = "auth",
    responses(
        (status = 302, description = "Redirect to the OpenID provider's authorization endpoint (code flow, PKCE S256, scope `openid email profile`). The sign-in must come back to the callback within 10 minutes.",
            headers(("Location" = String, description = "The provider's authorization URL"))),
        (status = 404, description = "`not_found`: external sign-in is not configured (`OIDC_ISSUER_URL` unset)", body = rentify_platform::error::ErrorEnvelope),
        (status = 503, description = "`identity_provider_unavailable`: the provider's discovery document could not be fetched", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn oidc_authorize(
    Extension(identity): Extension<Identity>,
    Extension(client): Extension<OidcClient>,
) -> Result<Response, IdentityError> {
    let settings = Settings::from_config(identity.config())?;
    let provider = client.metadata(&settings).await?;

    let state = random_token(32);
    let nonce = random_token(32);
    let verifier = random_token(48); // 64 characters of [A-Za-z0-9_-], as RFC 7636 asks
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));

    // Old, finished or abandoned sign-ins are no use to anyone.
    sqlx::query("DELETE FROM oidc_logins WHERE expires_at < now() - interval '1 day'")
        .execute(identity.db())
        .await?;
    sqlx::query(
        "INSERT INTO oidc_logins (state, code_verifier, nonce, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(mins => $4::int))",
    )
    .bind(&state)
    .bind(&verifier)
    .bind(&nonce)
    .bind(LOGIN_TTL_MINS as i32)
    .execute(identity.db())
    .await?;

    let mut url = Url::parse(&provider.authorization_endpoint)
        .map_err(|e| unavailable("the provider's authorization_endpoint is not a URL", e))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", &settings.redirect_url)
        .append_pair("scope", "openid email profile")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let location = HeaderValue::from_str(url.as_str()).map_err(ApiError::internal)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response())
}

/// What the provider appends to the redirect URI.
#[derive(Debug, Default, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    /// The authorization code (on success).
    pub code: Option<String>,
    /// The `state` that `/v1/auth/oidc/authorize` sent.
    pub state: Option<String>,
    /// The provider's error code (on failure), e.g. `access_denied`.
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The provider's issuer (RFC 9207), checked when present.
    pub iss: Option<String>,
}

/// Finishes the sign-in and returns a session.
#[utoipa::path(
    get, path = "/v1/auth/oidc/callback", tag = "auth",
    params(CallbackParams),
    responses(
        (status = 200, description = "Signed in: the account linked to this provider identity, else the account with the same verified email (then linked), else a new account", body = Session),
        (status = 400, description = "`invalid_oidc_state` (unknown, expired or reused `state`) or `oidc_sign_in_failed` (the provider returned an error such as `access_denied`, rejected the code, or its ID token did not verify)", body = rentify_platform::error::ErrorEnvelope),
        (status = 401, description = "`invalid_credentials`: the linked account is disabled", body = rentify_platform::error::ErrorEnvelope),
        (status = 404, description = "`not_found`: external sign-in is not configured", body = rentify_platform::error::ErrorEnvelope),
        (status = 409, description = "`email_taken`: the provider's unverified email belongs to another account", body = rentify_platform::error::ErrorEnvelope),
        (status = 503, description = "`identity_provider_unavailable`: the provider did not answer", body = rentify_platform::error::ErrorEnvelope),
    )
)]
pub async fn oidc_callback(
    Extension(identity): Extension<Identity>,
    Extension(client): Extension<OidcClient>,
    ValidQuery(params): ValidQuery<CallbackParams>,
) -> Result<axum::Json<Session>, IdentityError> {
    let settings = Settings::from_config(identity.config())?;
    let state = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(invalid_state)?;
    // Consumed first, whatever happens next: a state works once.
    let login: Option<(String, String)> = sqlx::query_as(
        "UPDATE oidc_logins SET used_at = now() \
         WHERE state = $1 AND used_at IS NULL AND expires_at > now() \
         RETURNING code_verifier, nonce",
    )
    .bind(state)
    .fetch_optional(identity.db())
    .await?;
    let (verifier, nonce) = login.ok_or_else(invalid_state)?;

    if let Some(error) = params.error.as_deref() {
        return Err(ApiError::bad_request(
            codes::OIDC_SIGN_IN_FAILED,
            "the identity provider did not sign the user in",
        )
        .with_detail(serde_json::json!({
            "error": error,
            "error_description": params.error_description,
        }))
        .into());
    }
    let provider = client.metadata(&settings).await?;
    if params
        .iss
        .as_deref()
        .is_some_and(|iss| iss != provider.issuer)
    {
        return Err(sign_in_failed("the callback came from another issuer"));
    }
    let code = params
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| sign_in_failed("the callback has neither `code` nor `error`"))?;

    let tokens = client
        .exchange_code(&settings, &provider, code, &verifier)
        .await?;
    let claims = client
        .verify_id_token(&settings, &provider, &tokens.id_token, &nonce)
        .await?;
    let mut profile = ExternalProfile {
        issuer: provider.issuer.clone(),
        subject: claims.sub.clone(),
        email: claims.email,
        email_verified: claims.email_verified.is_some_and(|v| v.0),
        name: claims.name,
    };
    // With the code flow, providers may keep scope claims for userinfo only
    // (OIDC Core 5.4); ask there when the ID token lacks them.
    if let (None, Some(endpoint)) = (&profile.email, &provider.userinfo_endpoint) {
        let info = client.userinfo(endpoint, &tokens.access_token).await?;
        if info.sub != claims.sub {
            return Err(sign_in_failed(
                "the provider's userinfo is about another user than its ID token",
            ));
        }
        profile.email = info.email;
        profile.email_verified = info.email_verified.is_some_and(|v| v.0);
        profile.name = profile.name.or(info.name);
    }
    let session = sessions::sign_in_external(&identity, profile).await?;
    Ok(axum::Json(session))
}

/// The configured provider; `not_found` when there is none.
struct Settings {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    redirect_url: String,
}

impl Settings {
    fn from_config(config: &Config) -> Result<Self, IdentityError> {
        let (Some(issuer), Some(client_id)) = (&config.oidc_issuer_url, &config.oidc_client_id)
        else {
            return Err(ApiError::not_found().into());
        };
        Ok(Self {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret: config
                .oidc_client_secret
                .as_ref()
                .map(|s| s.expose_secret().to_string()),
            redirect_url: config.oidc_redirect_url(),
        })
    }
}

/// The parts of the discovery document this flow uses.
#[derive(Debug, Deserialize)]
struct ProviderMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    /// Absent means `client_secret_basic` (OIDC Discovery 3).
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
    access_token: String,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// `email_verified`: a boolean, or (some providers) the string "true".
#[derive(Debug, Clone, Copy)]
struct Verified(bool);

impl<'de> Deserialize<'de> for Verified {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(b) => b,
            serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }))
    }
}

#[derive(Debug, Deserialize)]
struct IdTokenClaims {
    sub: String,
    /// A string or an array (checked by `jsonwebtoken`; counted here for `azp`).
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Verified>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Verified>,
    #[serde(default)]
    name: Option<String>,
}

/// The HTTP client for the provider, with its discovery document and keys
/// cached (one per app: it lives in the routes' `Extension`).
#[derive(Clone, Default)]
pub struct OidcClient {
    inner: Arc<ClientInner>,
}

#[derive(Default)]
struct ClientInner {
    http: OnceLock<reqwest::Client>,
    metadata: Mutex<Option<Cached<ProviderMetadata>>>,
    jwks: Mutex<Option<Cached<Vec<Jwk>>>>,
}

/// A fetched document, the URL or issuer it belongs to, and when it came.
struct Cached<T> {
    source: String,
    at: Instant,
    value: Arc<T>,
}

impl<T> Cached<T> {
    fn new(source: &str, value: Arc<T>) -> Self {
        Self {
            source: source.to_string(),
            at: Instant::now(),
            value,
        }
    }

    fn fresh(&self, source: &str, max_age: Duration) -> Option<Arc<T>> {
        (self.source == source && self.at.elapsed() < max_age).then(|| self.value.clone())
    }
}

impl OidcClient {
    fn http(&self) -> &reqwest::Client {
        self.inner.http.get_or_init(|| {
            reqwest::Client::builder()
                .user_agent("rentify")
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                // The token endpoint gets the client secret: never follow it elsewhere.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("the HTTP client builds (rustls with the webpki roots)")
        })
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, IdentityError> {
        let response = self
            .http()
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(&format!("{what} could not be fetched"), e))?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(unavailable(&format!("{what} could not be fetched"), status));
        }
        response
            .json()
            .await
            .map_err(|e| unavailable(&format!("{what} is not valid JSON"), e))
    }

    /// The discovery document (cached for an hour), checked against the
    /// configured issuer.
    async fn metadata(&self, settings: &Settings) -> Result<Arc<ProviderMetadata>, IdentityError> {
        let cached = (self.inner.metadata.lock().unwrap().as_ref())
            .and_then(|c| c.fresh(&settings.issuer, METADATA_TTL));
        if let Some(metadata) = cached {
            return Ok(metadata);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            settings.issuer.trim_end_matches('/')
        );
        let metadata: ProviderMetadata = self.get_json(&url, "the discovery document").await?;
        if metadata.issuer.trim_end_matches('/') != settings.issuer.trim_end_matches('/') {
            return Err(unavailable(
                "the discovery document names another issuer",
                format!("{} != {}", metadata.issuer, settings.issuer),
            ));
        }
        let metadata = Arc::new(metadata);
        *self.inner.metadata.lock().unwrap() =
            Some(Cached::new(&settings.issuer, metadata.clone()));
        Ok(metadata)
    }

    /// The provider's signing keys; `refresh` refetches them (key rotation),
    /// at most every 30 s.
    async fn keys(&self, jwks_uri: &str, refresh: bool) -> Result<Arc<Vec<Jwk>>, IdentityError> {
        let max_age = if refresh {
            JWKS_REFETCH_MIN
        } else {
            METADATA_TTL
        };
        let cached =
            (self.inner.jwks.lock().unwrap().as_ref()).and_then(|c| c.fresh(jwks_uri, max_age));
        if let Some(keys) = cached {
            return Ok(keys);
        }
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let set: RawSet = self.get_json(jwks_uri, "the provider's JWKS").await?;
        // Keys of kinds this library does not know are skipped, not fatal.
        let keys: Vec<Jwk> = set
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
            .collect();
        let keys = Arc::new(keys);
        *self.inner.jwks.lock().unwrap() = Some(Cached::new(jwks_uri, keys.clone()));
        Ok(keys)
    }

    async fn exchange_code(
        &self,
        settings: &Settings,
        provider: &ProviderMetadata,
        code: &str,
        verifier: &str,
    ) -> Result<TokenResponse, IdentityError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", settings.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self.http().post(&provider.token_endpoint);
        match &settings.client_secret {
            // RFC 6749 2.3.1: id and secret are form-encoded inside Basic.
            Some(secret) if basic_auth_supported(provider) => {
                let encode =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                request = request.basic_auth(encode(&settings.client_id), Some(encode(secret)));
            }
            Some(secret) => {
                form.push(("client_id", settings.client_id.as_str()));
                form.push(("client_secret", secret.as_str()));
            }
            // A public client: PKCE alone.
            None => form.push(("client_id", settings.client_id.as_str())),
        }
        let response = request
            .header(header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable("the token endpoint did not answer", e))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| sign_in_failed_because("the token response is not usable", e));
        }
        if status.is_server_error() {
            return Err(unavailable("the token endpoint failed", status));
        }
        let error: Option<TokenError> = response.json().await.ok();
        match error {
            // A forged, expired or replayed code, or a verifier that does not match.
            Some(e) if e.error == "invalid_grant" => Err(ApiError::bad_request(
                codes::OIDC_SIGN_IN_FAILED,
                "the identity provider rejected the authorization code",
            )
            .with_detail(serde_json::json!({
                "error": e.error,
                "error_description": e.error_description,
            }))
            .into()),
            // invalid_client, unauthorized_client, ...: our configuration is wrong.
            Some(e) => Err(ApiError::internal(anyhow::anyhow!(
                "OIDC token endpoint refused Rentify ({status}): {} {}; check OIDC_CLIENT_ID, \
                 OIDC_CLIENT_SECRET and OIDC_REDIRECT_URL",
                e.error,
                e.error_description.unwrap_or_default()
            ))
            .into()),
            None => Err(unavailable("the token endpoint failed", status)),
        }
    }

    async fn verify_id_token(
        &self,
        settings: &Settings,
        provider: &ProviderMetadata,
        id_token: &str,
        nonce: &str,
    ) -> Result<IdTokenClaims, IdentityError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| sign_in_failed_because("the ID token is malformed", e))?;
        if !ID_TOKEN_ALGORITHMS.contains(&header.alg) {
            return Err(sign_in_failed_because(
                "the ID token is not signed with an accepted algorithm",
                format!("{:?}", header.alg),
            ));
        }
        let mut key = find_key(&self.keys(&provider.jwks_uri, false).await?, &header);
        if key.is_none() {
            // Perhaps the provider rotated its keys since we cached them.
            key = find_key(&self.keys(&provider.jwks_uri, true).await?, &header);
        }
        let key = key.ok_or_else(|| {
            sign_in_failed_because(
                "no key of the provider's JWKS verifies the ID token",
                format!("kid {:?}", header.kid),
            )
        })?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&provider.issuer]);
        validation.set_audience(&[&settings.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        let claims = jsonwebtoken::decode::<IdTokenClaims>(id_token, &key, &validation)
            .map_err(|e| sign_in_failed_because("the ID token did not verify", e))?
            .claims;
        // OIDC Core 3.1.3.7: with several audiences, `azp` must be us.
        if claims.aud.as_array().is_some_and(|a| a.len() > 1)
            && claims.azp.as_deref() != Some(settings.client_id.as_str())
        {
            return Err(sign_in_failed("the ID token was issued to another client"));
        }
        if claims.nonce.as_deref() != Some(nonce) {
            return Err(sign_in_failed(
                "the ID token's nonce does not match this sign-in",
            ));
        }
        Ok(claims)
    }

    async fn userinfo(
        &self,
        endpoint: &str,
        access_token: &str,
    ) -> Result<UserInfo, IdentityError> {
        let response = self
            .http()
            .get(endpoint)
            .bearer_auth(access_token)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable("the userinfo endpoint did not answer", e))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(unavailable("the userinfo endpoint failed", status));
        }
        if !status.is_success() {
            return Err(sign_in_failed_because(
                "the userinfo endpoint refused the access token",
                status,
            ));
        }
        response
            .json()
            .await
            .map_err(|e| sign_in_failed_because("the userinfo response is not JSON claims", e))
    }
}

fn basic_auth_supported(provider: &ProviderMetadata) -> bool {
    provider
        .token_endpoint_auth_methods_supported
        .as_ref()
        .is_none_or(|methods| methods.iter().any(|m| m == "client_secret_basic"))
}

/// The JWKS key for this header: by `kid`, else the only key that fits the
/// algorithm's family.
fn find_key(keys: &[Jwk], header: &jsonwebtoken::Header) -> Option<DecodingKey> {
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => keys.iter().collect(),
    };
    let usable: Vec<DecodingKey> = candidates
        .into_iter()
        .filter_map(|k| DecodingKey::from_jwk(k).ok())
        .filter(|k| k.family() == header.alg.family())
        .collect();
    if usable.len() == 1 {
        usable.into_iter().next()
    } else {
        None
    }
}

fn invalid_state() -> IdentityError {
    ApiError::bad_request(
        codes::INVALID_OIDC_STATE,
        "this sign-in is unknown, expired or already finished; start again",
    )
    .into()
}

fn sign_in_failed(message: &'static str) -> IdentityError {
    tracing::warn!(reason = message, "OIDC sign-in failed");
    ApiError::bad_request(codes::OIDC_SIGN_IN_FAILED, message).into()
}

fn sign_in_failed_because(message: &'static str, cause: impl std::fmt::Display) -> IdentityError {
    tracing::warn!(reason = message, cause = %cause, "OIDC sign-in failed");
    ApiError::bad_request(codes::OIDC_SIGN_IN_FAILED, message).into()
}

fn unavailable(message: &str, cause: impl std::fmt::Display) -> IdentityError {
    tracing::warn!(reason = message, cause = %cause, "OpenID provider unavailable");
    ApiError::unavailable(
        codes::IDENTITY_PROVIDER_UNAVAILABLE,
        format!("the identity provider is unavailable: {message}"),
    )
    .with_retry_after(5)
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// https issuers work: without a TLS backend reqwest refuses an https URL
    /// ("scheme is not http"); with one, it tries and finds nothing listening.
    #[tokio::test]
    async fn the_http_client_speaks_https() {
        let client = OidcClient::default();
        let error = client
            .http()
            .get("https://127.0.0.1:1/.well-known/openid-configuration")
            .send()
            .await
            .unwrap_err();
        let error = format!("{error:?}");
        assert!(!error.contains("scheme is not http"), "{error}");
        assert!(error.contains("ConnectionRefused"), "{error}");
    }

    #[test]
    fn email_verified_accepts_booleans_and_the_string_true() {
        let parse = |v: serde_json::Value| serde_json::from_value::<Verified>(v).unwrap().0;
        assert!(parse(serde_json::json!(true)));
        assert!(parse(serde_json::json!("true")));
        assert!(!parse(serde_json::json!(false)));
        assert!(!parse(serde_json::json!("false")));
        assert!(!parse(serde_json::json!(1)));
    }

    #[test]
    fn client_secret_basic_is_the_default_auth_method() {
        let metadata = |methods: Option<Vec<&str>>| ProviderMetadata {
            issuer: "https://op".into(),
            authorization_endpoint: "https://op/auth".into(),
            token_endpoint: "https://op/token".into(),
            jwks_uri: "https://op/jwks".into(),
            userinfo_endpoint: None,
            token_endpoint_auth_methods_supported: methods
                .map(|m| m.into_iter().map(String::from).collect()),
        };
        assert!(basic_auth_supported(&metadata(None)));
        assert!(basic_auth_supported(&metadata(Some(vec![
            "client_secret_basic"
        ]))));
        assert!(!basic_auth_supported(&metadata(Some(vec![
            "client_secret_post"
        ]))));
    }
}
