//! A listing as the API shows it, and its `ETag`.

use axum::{
    Json,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use rentify_identity::users::Location;
use rentify_platform::http::etag::{if_match_allows, with_etag};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::Listing;
use crate::{
    error::ListingError,
    model::{
        BookingRules, Condition, DeliveryOptions, ListingStatus, ListingType, Policies, Pricing,
        PropertyDetails, ServicePackage,
    },
};

/// A listing: something to rent (item), to book (service) or to lease
/// (property). Its `ETag` header is `"<version>"`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListingView {
    pub id: Uuid,
    #[schema(example = "listing")]
    pub object: &'static str,
    pub owner_id: Uuid,
    #[serde(rename = "type")]
    pub kind: ListingType,
    pub status: ListingStatus,
    pub title: Option<String>,
    pub description: Option<String>,
    pub category_id: Option<Uuid>,
    /// Ordered `{id, url, type, alt, thumbnail_url}`; managed by the media routes.
    #[schema(value_type = Vec<Object>)]
    pub media: serde_json::Value,
    pub location: Option<Location>,
    pub time_zone: String,
    pub pricing: Option<Pricing>,
    pub quantity: i64,
    pub condition: Option<Condition>,
    pub included_items: Vec<String>,
    pub service_scope: Option<String>,
    pub service_packages: Vec<ServicePackage>,
    pub property: Option<PropertyDetails>,
    pub delivery_options: DeliveryOptions,
    pub policies: Policies,
    pub booking_rules: BookingRules,
    pub instant_book: bool,
    /// Why an admin rejected it (status `rejected`).
    pub rejection_reason: Option<String>,
    /// Bumped by every change; the `ETag`.
    pub version: i32,
    pub published_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Listing> for ListingView {
    fn from(listing: Listing) -> Self {
        let data = listing.data;
        Self {
            id: listing.id,
            object: "listing",
            owner_id: listing.owner_id,
            kind: data.kind,
            status: listing.status,
            title: data.title,
            description: data.description,
            category_id: data.category_id,
            media: listing.media,
            location: data.location,
            time_zone: data.time_zone,
            pricing: data.pricing,
            quantity: data.quantity,
            condition: data.condition,
            included_items: data.included_items,
            service_scope: data.service_scope,
            service_packages: data.service_packages,
            property: data.property,
            delivery_options: data.delivery_options,
            policies: data.policies,
            booking_rules: data.booking_rules,
            instant_book: data.instant_book,
            rejection_reason: listing.rejection_reason,
            version: listing.version,
            published_at: listing.published_at,
            archived_at: listing.archived_at,
            created_at: listing.created_at,
            updated_at: listing.updated_at,
        }
    }
}

/// A listing response with its `ETag` header.
pub struct ListingResponse {
    pub status: StatusCode,
    pub listing: ListingView,
}

impl ListingResponse {
    pub fn ok(listing: Listing) -> Self {
        Self {
            status: StatusCode::OK,
            listing: listing.into(),
        }
    }
}

impl IntoResponse for ListingResponse {
    fn into_response(self) -> Response {
        let version = self.listing.version;
        with_etag((self.status, Json(self.listing)).into_response(), version)
    }
}

/// Checks `If-Match` against the current version (strong comparison, as
/// RFC 9110 requires): absent or `*` passes; otherwise one of the listed
/// tags must be `"<version>"`, else 412 `precondition_failed`.
pub fn check_if_match(headers: &HeaderMap, version: i32) -> Result<(), ListingError> {
    if if_match_allows(headers, version) {
        Ok(())
    } else {
        Err(ListingError::PreconditionFailed { current: version })
    }
}

/// Whether the request carries `If-Match` at all.
pub fn has_if_match(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_MATCH)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        assert!(check_if_match(&HeaderMap::new(), 3).is_ok());
        assert!(check_if_match(&with("\"3\""), 3).is_ok());
        assert!(check_if_match(&with("\"1\", \"3\""), 3).is_ok());
        assert!(check_if_match(&with("*"), 3).is_ok());
        assert!(check_if_match(&with("\"2\""), 3).is_err());
        assert!(check_if_match(&with("W/\"3\""), 3).is_err());
        assert!(check_if_match(&with("3"), 3).is_err());
    }
}
