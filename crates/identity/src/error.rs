//! The identity module's errors and their one mapping to the envelope.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use rentify_platform::ApiError;

/// Stable codes this module adds (listed in docs/API-DESIGN.md).
pub mod codes {
    pub const WEAK_PASSWORD: &str = "weak_password";
    pub const EMAIL_TAKEN: &str = "email_taken";
    pub const PHONE_TAKEN: &str = "phone_taken";
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    pub const ACCOUNT_LOCKED: &str = "account_locked";
    pub const INVALID_REFRESH_TOKEN: &str = "invalid_refresh_token";
    pub const REFRESH_TOKEN_REUSED: &str = "refresh_token_reused";
    pub const MFA_REQUIRED: &str = "mfa_required";
    pub const INVALID_MFA_CODE: &str = "invalid_mfa_code";
    pub const INVALID_MFA_CHALLENGE: &str = "invalid_mfa_challenge";
    pub const MFA_ALREADY_ENABLED: &str = "mfa_already_enabled";
    pub const MFA_NOT_ENABLED: &str = "mfa_not_enabled";
    pub const MFA_NOT_ENROLLED: &str = "mfa_not_enrolled";
    pub const INVALID_VERIFICATION_TOKEN: &str = "invalid_verification_token";
    pub const INVALID_OTP: &str = "invalid_otp";
    pub const OTP_ATTEMPTS_EXCEEDED: &str = "otp_attempts_exceeded";
    pub const INVALID_SIGNATURE: &str = "invalid_signature";
    pub const SIGNUP_VELOCITY: &str = "signup_velocity_exceeded";
    pub const EMAIL_ALREADY_VERIFIED: &str = "email_already_verified";
    pub const IDENTITY_VERIFICATION_PENDING: &str = "identity_verification_pending";
    pub const IDENTITY_ALREADY_VERIFIED: &str = "identity_already_verified";
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    WeakPassword(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("incorrect email or password")]
    InvalidCredentials,
    #[error("too many failed sign-ins; the account is locked for a while")]
    AccountLocked { retry_after_secs: u64 },
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefreshToken,
    #[error("this refresh token was already used; every session of this sign-in is revoked")]
    RefreshTokenReused,
    #[error("too many accounts were created from this network; try again later")]
    SignupVelocity { retry_after_secs: u64 },
    #[error("{}", .0.message())]
    Api(ApiError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<ApiError> for IdentityError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<sqlx::Error> for IdentityError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.into())
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        let message = error.to_string();
        match error {
            IdentityError::WeakPassword(reason) => ApiError::bad_request(
                codes::WEAK_PASSWORD,
                format!("the password is too weak: {reason}"),
            )
            .with_detail(serde_json::json!({"field": "password", "reason": reason})),
            IdentityError::EmailTaken => ApiError::conflict(codes::EMAIL_TAKEN, message),
            IdentityError::InvalidCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::INVALID_CREDENTIALS,
                message,
            ),
            IdentityError::AccountLocked { retry_after_secs } => {
                ApiError::new(StatusCode::LOCKED, codes::ACCOUNT_LOCKED, message)
                    .with_retry_after(retry_after_secs)
            }
            IdentityError::InvalidRefreshToken => ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::INVALID_REFRESH_TOKEN,
                message,
            ),
            IdentityError::RefreshTokenReused => ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::REFRESH_TOKEN_REUSED,
                message,
            ),
            IdentityError::SignupVelocity { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::SIGNUP_VELOCITY,
                message,
            )
            .with_retry_after(retry_after_secs),
            IdentityError::Api(error) => error,
            IdentityError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
