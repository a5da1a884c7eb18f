//! The shapes a listing is made of, shared with the bookings module: what is
//! stored in the listing's jsonb columns is exactly these types' JSON.

use rentify_platform::money::Currency;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What kind of thing is rented; it decides which fields a listing needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListingType {
    Item,
    Service,
    Property,
}

impl ListingType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Item => "item",
            Self::Service => "service",
            Self::Property => "property",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Item, Self::Service, Self::Property]
            .into_iter()
            .find(|t| t.as_str() == value)
    }
}

/// Lifecycle of a listing. Only `active` listings can be booked or found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListingStatus {
    Draft,
    PendingReview,
    Active,
    Paused,
    Rejected,
    Archived,
}

impl ListingStatus {
    pub const ALL: [Self; 6] = [
        Self::Draft,
        Self::PendingReview,
        Self::Active,
        Self::Paused,
        Self::Rejected,
        Self::Archived,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::PendingReview => "pending_review",
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Rejected => "rejected",
            Self::Archived => "archived",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// Rates in minor units of `currency`. At least one of hourly, daily and
/// weekly is needed to publish (services may price by package instead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Pricing {
    #[serde(default)]
    pub hourly: Option<i64>,
    #[serde(default)]
    pub daily: Option<i64>,
    #[serde(default)]
    pub weekly: Option<i64>,
    /// Refundable security deposit, held for the rental.
    #[serde(default)]
    pub deposit: i64,
    pub currency: Currency,
}

/// A fixed-price service offer (services only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServicePackage {
    /// Unique within the listing; bookings name it.
    pub name: String,
    /// Minor units of the listing's currency.
    pub price: i64,
    #[serde(default)]
    pub description: Option<String>,
}

/// How the renter gets the item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryOptions {
    pub pickup: bool,
    pub delivery: bool,
    /// Minor units, charged when the renter picks delivery.
    #[serde(default)]
    pub delivery_fee: i64,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            pickup: true,
            delivery: false,
            delivery_fee: 0,
        }
    }
}

/// How much of a booking comes back when the renter cancels (see the
/// bookings module's refund policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancellationPolicy {
    Flexible,
    #[default]
    Moderate,
    Strict,
}

impl CancellationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flexible => "flexible",
            Self::Moderate => "moderate",
            Self::Strict => "strict",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Flexible, Self::Moderate, Self::Strict]
            .into_iter()
            .find(|p| p.as_str() == value)
    }
}

/// The listing's house rules, shown to renters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Policies {
    #[serde(default)]
    pub cancellation: CancellationPolicy,
    /// Free text: what happens on damage.
    #[serde(default)]
    pub damage: Option<String>,
    /// Free text: what happens on a late return.
    #[serde(default)]
    pub late_return: Option<String>,
}

/// Scheduling rules a booking must satisfy; all optional. Minutes and days
/// are reckoned in the listing's time zone where that matters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BookingRules {
    /// Free time kept after each booking (cleaning, handover).
    #[serde(default)]
    pub buffer_minutes: u32,
    /// How long before its start a booking must be made.
    #[serde(default)]
    pub min_notice_minutes: u32,
    /// How far ahead a booking may start.
    #[serde(default)]
    pub max_advance_days: Option<u32>,
    #[serde(default)]
    pub min_duration_minutes: Option<u32>,
    #[serde(default)]
    pub max_duration_minutes: Option<u32>,
}

/// Property details (type `property` only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PropertyDetails {
    pub property_type: PropertyType,
    #[serde(default)]
    pub bedrooms: Option<u32>,
    #[serde(default)]
    pub bathrooms: Option<u32>,
    #[serde(default)]
    pub area_sqm: Option<u32>,
    #[serde(default)]
    pub amenities: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    Apartment,
    Room,
    House,
}

/// Condition of an item (items only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    New,
    LikeNew,
    Good,
    Fair,
}
