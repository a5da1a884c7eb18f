//! Who is calling: the [`Principal`] every module authorizes against, the
//! middleware that resolves `Authorization: Bearer …` into one, and the
//! extractors handlers use ([`Caller`], [`MaybeCaller`]).
//!
//! The platform does not know how tokens are verified: the identity module
//! registers an [`Authenticator`] (JWT access tokens and `rk_live_` API keys)
//! on the state. Keeping the extractors here means every later module
//! depends on `platform` only, never on `identity`.

use std::{collections::BTreeSet, fmt, sync::Arc};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    error::{ApiError, codes},
    ratelimit::RateLimitSubject,
    state::PlatformState,
};

/// A role in the marketplace (RBAC). Every account is a `renter`; it becomes
/// an `owner` with its first listing; `admin` is granted explicitly.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Renter,
    Owner,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Renter, Role::Owner, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Renter => "renter",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A user's JWT access token; `session_id` names its refresh-token family.
    AccessToken { session_id: Uuid },
    /// A scoped service API key; `key_id` is its id.
    ApiKey { key_id: Uuid },
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The account acting: the user, or for an API key the admin who created it.
    pub user_id: Uuid,
    pub roles: BTreeSet<Role>,
    /// `None` for user tokens (everything the roles allow); the exact scopes
    /// of an API key otherwise.
    pub scopes: Option<BTreeSet<String>>,
    pub credential: Credential,
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(Role::Admin) && self.scopes.is_none()
    }

    /// 403 unless the caller holds `role`.
    pub fn require_role(&self, role: Role) -> Result<(), ApiError> {
        if self.has_role(role) && self.scopes.is_none() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this action requires the `{role}` role"
            )))
        }
    }

    /// 403 unless the caller may use `scope`: user tokens may use every
    /// scope their roles allow; API keys exactly the scopes they were given.
    pub fn require_scope(&self, scope: &str) -> Result<(), ApiError> {
        match &self.scopes {
            None => Ok(()),
            Some(scopes) if scopes.contains(scope) => Ok(()),
            Some(_) => Err(ApiError::forbidden(format!(
                "this API key lacks the `{scope}` scope"
            ))),
        }
    }

    /// 403 for API keys: the route acts as a person (profile, password, MFA).
    pub fn require_user_token(&self) -> Result<(), ApiError> {
        match self.credential {
            Credential::AccessToken { .. } => Ok(()),
            Credential::ApiKey { .. } => Err(ApiError::forbidden(
                "this route needs a user's access token, not an API key",
            )),
        }
    }
}

/// Resolves a bearer token into a [`Principal`]; implemented by the identity
/// module. An error is answered as is (401 `invalid_token`, …).
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, token: &str) -> Result<Principal, ApiError>;
}

/// Registered authenticator, if any (tests of the platform run without one).
pub type SharedAuthenticator = Arc<dyn Authenticator>;

/// Middleware: resolves the bearer token before the rate limiter runs, so
/// limits apply per user; records `user.id` on the request span. A present
/// but invalid token is refused on every route, as Stripe does with keys.
pub async fn authenticate(
    State(state): State<PlatformState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = match bearer_token(&request) {
        Ok(Some(token)) => token.to_owned(),
        Ok(None) => return next.run(request).await,
        Err(error) => return error.into_response(),
    };
    let Some(authenticator) = state.authenticator() else {
        return next.run(request).await;
    };
    match authenticator.authenticate(&token).await {
        Ok(principal) => {
            tracing::Span::current().record("user.id", tracing::field::display(principal.user_id));
            let subject = match principal.credential {
                Credential::ApiKey { key_id } => format!("key:{key_id}"),
                Credential::AccessToken { .. } => format!("user:{}", principal.user_id),
            };
            request.extensions_mut().insert(RateLimitSubject(subject));
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

fn bearer_token(request: &Request) -> Result<Option<&str>, ApiError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| invalid_token("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| invalid_token("expected `Authorization: Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(invalid_token("expected `Authorization: Bearer <token>`"));
    }
    Ok(Some(token.trim()))
}

/// 401 `invalid_token`: credentials were sent but do not verify.
pub fn invalid_token(message: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, codes::INVALID_TOKEN, message)
}

/// The authenticated caller; 401 `unauthenticated` without credentials.
#[derive(Clone, Debug)]
pub struct Caller(pub Principal);

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "authentication required: send `Authorization: Bearer <access token>`",
                )
            })
    }
}

/// A person's access token (not an API key): routes that act as the user
/// (profile, password, MFA, privacy). 401 without credentials, 403 for keys.
#[derive(Clone, Debug)]
pub struct UserCaller(pub Principal);

impl std::ops::Deref for UserCaller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        principal.require_user_token()?;
        Ok(Self(principal))
    }
}

/// The caller if one authenticated; public routes that personalise use it.
#[derive(Clone, Debug)]
pub struct MaybeCaller(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<Principal>().cloned()))
    }
}

/// An authenticated admin (user token with the `admin` role); 403 otherwise.
#[derive(Clone, Debug)]
pub struct AdminCaller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        principal.require_role(Role::Admin)?;
        Ok(Self(principal))
    }
}

/// Documents the bearer scheme in OpenAPI (`security: [{"bearer": []}]`).
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT access token or rk_live_ API key")
                    .build(),
            ),
        );
    }
}
