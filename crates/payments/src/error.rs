//! The payments module's errors, mapped to the envelope in one place.

use axum::http::StatusCode;
use rentify_platform::ApiError;

use crate::{gateway::GatewayError, ledger::LedgerError};

pub type PaymentResult<T> = Result<T, PaymentError>;

/// Stable error codes of the payments endpoints.
pub mod codes {
    pub const PAYMENT_METHOD_REQUIRED: &str = "payment_method_required";
    pub const PAYMENT_DECLINED: &str = "payment_declined";
    pub const PROVIDER_UNAVAILABLE: &str = "payment_provider_unavailable";
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
    pub const PAYOUT_ACCOUNT_REQUIRED: &str = "payout_account_required";
    pub const INVALID_PAYMENT_STATE: &str = "invalid_payment_state";
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("not found")]
    NotFound,
    #[error("a payment method is required")]
    MethodRequired,
    #[error("declined: {code}")]
    Declined { code: String, message: String },
    #[error("the payment provider is unavailable")]
    ProviderUnavailable,
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("a payout account is required")]
    PayoutAccountRequired,
    #[error("the payment is {0}")]
    InvalidState(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{}", .0.message())]
    Api(ApiError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<GatewayError> for PaymentError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::Declined { code, message } => Self::Declined { code, message },
            GatewayError::Invalid(message) => Self::Refused(message),
            GatewayError::Unavailable(_) => Self::ProviderUnavailable,
        }
    }
}

impl From<ApiError> for PaymentError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

/// How long a client should wait before retrying after a gateway outage.
pub const RETRY_AFTER_SECS: u64 = 10;

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::NotFound => ApiError::not_found(),
            PaymentError::MethodRequired => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                codes::PAYMENT_METHOD_REQUIRED,
                "add a payment method (POST /v1/payments/methods) or pass `payment_method_id`",
            ),
            PaymentError::Declined { code, message } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                codes::PAYMENT_DECLINED,
                format!("the card was declined: {message}"),
            )
            .with_detail(serde_json::json!({ "decline_code": code })),
            PaymentError::ProviderUnavailable => ApiError::unavailable(
                codes::PROVIDER_UNAVAILABLE,
                "the payment provider is unavailable; nothing was charged, retry later",
            )
            .with_retry_after(RETRY_AFTER_SECS),
            PaymentError::Refused(message) => ApiError::bad_request("payment_refused", message),
            PaymentError::PayoutAccountRequired => ApiError::conflict(
                codes::PAYOUT_ACCOUNT_REQUIRED,
                "set up a payout account first (POST /v1/payouts/setup)",
            ),
            PaymentError::InvalidState(state) => ApiError::conflict(
                codes::INVALID_PAYMENT_STATE,
                format!("the payment is {state}"),
            ),
            PaymentError::Ledger(error) => error.into(),
            PaymentError::Api(error) => error,
            PaymentError::Database(error) => error.into(),
            PaymentError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl axum::response::IntoResponse for PaymentError {
    fn into_response(self) -> axum::response::Response {
        ApiError::from(self).into_response()
    }
}
