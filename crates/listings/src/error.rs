//! The listings module's errors and their one mapping to the envelope.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use rentify_platform::{
    ApiError,
    error::{FieldError, codes as platform_codes},
};

use crate::model::ListingStatus;

/// Stable codes this module adds (listed in docs/API-DESIGN.md).
pub mod codes {
    /// Publishing a listing that lacks required fields; one detail per field.
    pub const LISTING_INCOMPLETE: &str = "listing_incomplete";
    /// The listing's status does not allow the action; details carry it.
    pub const INVALID_TRANSITION: &str = "invalid_transition";
    /// A blocked window overlaps a booking (or another blocked window).
    pub const AVAILABILITY_CONFLICT: &str = "availability_conflict";
    /// Lowering `quantity` below a unit that still has future windows.
    pub const QUANTITY_IN_USE: &str = "quantity_in_use";
}

#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// No such listing, or one the caller may not see.
    #[error("no such resource")]
    NotFound,
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("the listing is missing fields it needs to be published")]
    Incomplete(Vec<FieldError>),
    #[error("a listing that is `{}` cannot be {action}", .status.as_str())]
    InvalidTransition {
        status: ListingStatus,
        action: &'static str,
    },
    /// `If-Match` named another version than the current one.
    #[error("the listing changed since it was read (current ETag \"{current}\")")]
    PreconditionFailed { current: i32 },
    #[error("the window overlaps a booking or another blocked window of the same unit")]
    AvailabilityConflict,
    #[error("units {quantity} and above still have upcoming windows; release them first")]
    QuantityInUse { quantity: i32 },
    #[error("{}", .0.message())]
    Api(ApiError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ListingError {
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }])
    }
}

impl From<ApiError> for ListingError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<sqlx::Error> for ListingError {
    fn from(error: sqlx::Error) -> Self {
        Self::Api(ApiError::from(error))
    }
}

impl From<ListingError> for ApiError {
    fn from(error: ListingError) -> Self {
        let message = error.to_string();
        match error {
            ListingError::NotFound => ApiError::not_found(),
            ListingError::Invalid(fields) => ApiError::validation(fields),
            ListingError::Incomplete(fields) => ApiError::bad_request(
                codes::LISTING_INCOMPLETE,
                format!(
                    "the listing cannot be published yet: {} field(s) missing or invalid",
                    fields.len()
                ),
            )
            .with_details(
                fields
                    .into_iter()
                    .map(|f| serde_json::to_value(f).unwrap_or_default())
                    .collect(),
            ),
            ListingError::InvalidTransition { status, action } => {
                ApiError::conflict(codes::INVALID_TRANSITION, message)
                    .with_detail(serde_json::json!({"status": status, "action": action}))
            }
            ListingError::PreconditionFailed { current } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                platform_codes::PRECONDITION_FAILED,
                message,
            )
            .with_detail(serde_json::json!({"current_etag": format!("\"{current}\"")})),
            ListingError::AvailabilityConflict => {
                ApiError::conflict(codes::AVAILABILITY_CONFLICT, message)
            }
            ListingError::QuantityInUse { quantity } => {
                ApiError::conflict(codes::QUANTITY_IN_USE, message)
                    .with_detail(serde_json::json!({"field": "quantity", "quantity": quantity}))
            }
            ListingError::Api(error) => error,
            ListingError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl IntoResponse for ListingError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// Whether `error` is a violation of the constraint named `name`, for
/// mapping constraint violations to client errors where the query runs.
pub fn is_constraint(error: &sqlx::Error, name: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.constraint() == Some(name))
}
