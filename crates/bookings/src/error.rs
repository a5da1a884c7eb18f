//! The bookings module's errors and their one mapping to the envelope.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use rentify_platform::{ApiError, error::codes as platform_codes};
use serde_json::json;

use crate::{pricing::PricingError, state::Status};

/// Stable codes this module adds (listed in docs/API-DESIGN.md).
pub mod codes {
    /// 409: every unit of the listing is taken for (part of) that time.
    pub const BOOKING_CONFLICT: &str = "booking_conflict";
    /// 409: the action does not exist from the booking's current status;
    /// `details: [{"current_status": "..."}]`.
    pub const INVALID_TRANSITION: &str = "invalid_transition";
    /// 409: the listing is not `active` (draft, paused, archived, …).
    pub const LISTING_UNAVAILABLE: &str = "listing_unavailable";
    /// 409: the listing has opening hours and the booking is not inside one.
    pub const OUTSIDE_AVAILABILITY: &str = "outside_availability";
    /// 400: a booking rule of the listing; `details: [{"rule": "min_notice" |
    /// "max_advance" | "min_duration" | "max_duration", "limit": ..}]`.
    pub const BOOKING_RULE_VIOLATED: &str = "booking_rule_violated";
    /// 403: an owner cannot book their own listing.
    pub const OWN_LISTING: &str = "own_listing";
    /// 400: the listing's rates cannot price this booking.
    pub const PRICING_FAILED: &str = "pricing_failed";
}

/// A scheduling rule of the listing (its `booking_rules`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    MinNotice,
    MaxAdvance,
    MinDuration,
    MaxDuration,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MinNotice => "min_notice",
            Self::MaxAdvance => "max_advance",
            Self::MinDuration => "min_duration",
            Self::MaxDuration => "max_duration",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("no such resource")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("you cannot book your own listing")]
    OwnListing,
    #[error("the listing is {0} and cannot be booked")]
    ListingUnavailable(&'static str),
    #[error("the booking breaks the listing's `{}` rule: {message}", rule.as_str())]
    RuleViolated {
        rule: Rule,
        message: String,
        limit: serde_json::Value,
    },
    #[error("the listing is not open for the whole of that time")]
    OutsideAvailability,
    #[error("the listing has no free unit for that time")]
    Conflict,
    #[error("cannot {action} a booking that is {}", current.as_str())]
    InvalidTransition {
        action: &'static str,
        current: Status,
    },
    #[error("the booking cannot be priced: {0}")]
    Pricing(#[from] PricingError),
    #[error("{}", .0.message())]
    Api(ApiError),
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl BookingError {
    pub fn rule(rule: Rule, message: impl Into<String>, limit: serde_json::Value) -> Self {
        Self::RuleViolated {
            rule,
            message: message.into(),
            limit,
        }
    }
}

impl From<ApiError> for BookingError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<anyhow::Error> for BookingError {
    /// Errors of the listings side (`inventory`, `terms`) arrive as
    /// `anyhow`; a database error inside gets the same mapping as ours.
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<sqlx::Error>() {
            Ok(db) => Self::from(db),
            Err(other) => Self::Internal(other),
        }
    }
}

impl From<sqlx::Error> for BookingError {
    /// A constraint that guards a slot becomes 409 `booking_conflict`; a
    /// deadlock or serialization failure between concurrent bookings too
    /// (the client retries). A saturated pool or a lost connection is 503
    /// (`ApiError`'s mapping). Anything else is ours.
    fn from(error: sqlx::Error) -> Self {
        if let Some(db) = error.as_database_error() {
            match db.constraint() {
                Some("availability_no_overlap") => return Self::Conflict,
                Some("bookings_renter_idempotency_key") => {
                    return Self::Api(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        platform_codes::IDEMPOTENCY_KEY_REUSED,
                        "this Idempotency-Key was already used for another booking; use a new key",
                    ));
                }
                _ => {}
            }
            if matches!(db.code().as_deref(), Some("40P01" | "40001")) {
                return Self::Conflict;
            }
            return Self::Internal(error.into());
        }
        // A saturated pool or a lost connection: the platform's 503 with
        // Retry-After, not a 500.
        Self::Api(ApiError::from(error))
    }
}

impl From<BookingError> for ApiError {
    fn from(error: BookingError) -> Self {
        let message = error.to_string();
        match error {
            BookingError::NotFound => ApiError::not_found(),
            BookingError::Forbidden(message) => ApiError::forbidden(message),
            BookingError::OwnListing => {
                ApiError::new(StatusCode::FORBIDDEN, codes::OWN_LISTING, message)
            }
            BookingError::ListingUnavailable(status) => {
                ApiError::conflict(codes::LISTING_UNAVAILABLE, message)
                    .with_detail(json!({"listing_status": status}))
            }
            BookingError::RuleViolated { rule, limit, .. } => {
                ApiError::bad_request(codes::BOOKING_RULE_VIOLATED, message)
                    .with_detail(json!({"rule": rule.as_str(), "limit": limit}))
            }
            BookingError::OutsideAvailability => {
                ApiError::conflict(codes::OUTSIDE_AVAILABILITY, message)
            }
            BookingError::Conflict => {
                ApiError::conflict(codes::BOOKING_CONFLICT, message).with_retry_after(1)
            }
            BookingError::InvalidTransition { current, .. } => {
                ApiError::conflict(codes::INVALID_TRANSITION, message)
                    .with_detail(json!({"current_status": current.as_str()}))
            }
            BookingError::Pricing(_) => ApiError::bad_request(codes::PRICING_FAILED, message),
            BookingError::Api(error) => error,
            BookingError::Internal(error) => ApiError::internal(error),
        }
    }
}

impl IntoResponse for BookingError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

pub type BookingResult<T> = Result<T, BookingError>;
