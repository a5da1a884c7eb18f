//! Multi-factor authentication (TOTP, RFC 6238). (Filled in by the MFA work.)

use rentify_platform::{ApiError, PlatformState};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::{Identity, IdentityError};

pub fn routes() -> OpenApiRouter<PlatformState> {
    OpenApiRouter::new()
}

/// Creates the short-lived challenge a password login answers with when
/// MFA is on; the returned error is the 401 `mfa_required` response.
pub async fn start_challenge(
    _identity: &Identity,
    _conn: &mut PgConnection,
    _user_id: Uuid,
) -> Result<ApiError, IdentityError> {
    Err(IdentityError::Internal(anyhow::anyhow!(
        "MFA is not implemented yet"
    )))
}
