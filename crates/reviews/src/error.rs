//! The reviews module's errors and their one mapping to the envelope.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use rentify_bookings::error::BookingError;
use rentify_platform::{ApiError, error::codes as platform_codes};
use serde_json::json;

/// Stable codes this module adds (to list in docs/API-DESIGN.md).
pub mod codes {
    /// 409: the caller already reviewed this booking (one review per
    /// author per booking; edit it instead).
    pub const REVIEW_EXISTS: &str = "review_exists";
    /// 409: only a completed booking can be reviewed;
    /// `details: [{"current_status": ".."}]`.
    pub const BOOKING_NOT_COMPLETED: &str = "booking_not_completed";
    /// 409: the review window (REVIEWS_WINDOW_SECS after completion) has
    /// closed; `details: [{"closed_at": ".."}]`.
    pub const REVIEW_WINDOW_CLOSED: &str = "review_window_closed";
    /// 409: the review can no longer be edited; `details: [{"reason":
    /// "edit_window_passed" | "revealed" | "rejected"}]`.
    pub const REVIEW_LOCKED: &str = "review_locked";
    /// 409: approve/reject of a review that is not `pending`;
    /// `details: [{"current_status": ".."}]`.
    pub const INVALID_TRANSITION: &str = "invalid_transition";
}

/// Why a review cannot be edited any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockReason {
    /// 48 hours after it was written.
    EditWindowPassed,
    /// The other party can see it now: changing it would be retaliation,
    /// which the double blind exists to prevent.
    Revealed,
    /// A moderator's decision is final.
    Rejected,
}

impl LockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EditWindowPassed => "edit_window_passed",
            Self::Revealed => "revealed",
            Self::Rejected => "rejected",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("no such resource")]
    NotFound,
    #[error("the booking is {current}; only a completed booking can be reviewed")]
    BookingNotCompleted { current: String },
    #[error("the review window of this booking closed at {closed_at}")]
    WindowClosed { closed_at: DateTime<Utc> },
    #[error("you already reviewed this booking; edit your review instead")]
    Exists,
    #[error("this review can no longer be edited ({})", .0.as_str())]
    Locked(LockReason),
    #[error("cannot moderate a review that is {current}")]
    InvalidTransition { current: String },
    #[error("the review changed since you read it (`If-Match` is not its current ETag)")]
    PreconditionFailed { current: i32 },
    #[error("{}", .0.message())]
    Api(ApiError),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<ApiError> for ReviewError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<anyhow::Error> for ReviewError {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<sqlx::Error>() {
            Ok(db) => Self::from(db),
            Err(other) => Self::Internal(other),
        }
    }
}

impl From<sqlx::Error> for ReviewError {
    /// The one-review-per-author constraint is the backstop of the check
    /// made under the booking's lock: 409 `review_exists`. A saturated pool
    /// or a lost connection is the platform's 503; anything else is ours.
    fn from(error: sqlx::Error) -> Self {
        if let Some(db) = error.as_database_error() {
            if db.constraint() == Some("reviews_one_per_author") {
                return Self::Exists;
            }
            return Self::Internal(error.into());
        }
        Self::Api(ApiError::from(error))
    }
}

impl From<BookingError> for ReviewError {
    /// A booking the caller may not see is as absent as one that does not
    /// exist.
    fn from(error: BookingError) -> Self {
        match error {
            BookingError::NotFound => Self::NotFound,
            other => Self::Api(ApiError::from(other)),
        }
    }
}

impl From<ReviewError> for ApiError {
    fn from(error: ReviewError) -> Self {
        let message = error.to_string();
        match error {
            ReviewError::NotFound => ApiError::not_found(),
            ReviewError::BookingNotCompleted { current } => {
                ApiError::conflict(codes::BOOKING_NOT_COMPLETED, message)
                    .with_detail(json!({"current_status": current}))
            }
            ReviewError::WindowClosed { closed_at } => {
                ApiError::conflict(codes::REVIEW_WINDOW_CLOSED, message)
                    .with_detail(json!({"closed_at": closed_at}))
            }
            ReviewError::Exists => ApiError::conflict(codes::REVIEW_EXISTS, message),
            ReviewError::Locked(reason) => ApiError::conflict(codes::REVIEW_LOCKED, message)
                .with_detail(json!({"reason": reason.as_str()})),
            ReviewError::InvalidTransition { current } => {
                ApiError::conflict(codes::INVALID_TRANSITION, message)
                    .with_detail(json!({"current_status": current}))
            }
            ReviewError::PreconditionFailed { current } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                platform_codes::PRECONDITION_FAILED,
                message,
            )
            .with_detail(json!({"current_etag": rentify_platform::http::etag::etag(current)})),
            ReviewError::Api(error) => error,
            ReviewError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl IntoResponse for ReviewError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

pub type ReviewResult<T> = Result<T, ReviewError>;
