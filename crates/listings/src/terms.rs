//! What the bookings module needs to know about a listing to price and
//! place a booking, read on the booking's own transaction.

use chrono_tz::Tz;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::model::{
    BookingRules, DeliveryOptions, ListingStatus, ListingType, Policies, Pricing, ServicePackage,
};

/// A listing as a booking sees it.
#[derive(Clone, Debug)]
pub struct BookingTerms {
    pub listing_id: Uuid,
    pub owner_id: Uuid,
    pub kind: ListingType,
    pub status: ListingStatus,
    pub title: String,
    pub quantity: i32,
    pub time_zone: Tz,
    /// `None` only for drafts; a published listing always has pricing.
    pub pricing: Option<Pricing>,
    pub service_packages: Vec<ServicePackage>,
    pub delivery: DeliveryOptions,
    pub policies: Policies,
    pub rules: BookingRules,
    pub instant_book: bool,
    /// The listing's version (its ETag) when read: a booking placed with
    /// these terms is refused if the listing changed since (see the
    /// bookings module's placement), so the terms may be cached.
    pub version: i32,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    owner_id: Uuid,
    r#type: String,
    status: String,
    title: Option<String>,
    quantity: i32,
    time_zone: String,
    pricing: Option<serde_json::Value>,
    service_packages: serde_json::Value,
    delivery_options: serde_json::Value,
    policies: serde_json::Value,
    booking_rules: serde_json::Value,
    instant_book: bool,
    version: i32,
}

/// Loads the terms of `listing_id`, or `None` when there is no such listing.
/// `lock` takes a `FOR SHARE` lock so the listing cannot change (e.g. be
/// paused or archived) until the caller's transaction ends.
pub async fn booking_terms(
    conn: &mut PgConnection,
    listing_id: Uuid,
    lock: bool,
) -> anyhow::Result<Option<BookingTerms>> {
    let sql = if lock {
        "SELECT id, owner_id, type, status, title, quantity, time_zone, pricing, service_packages,
                delivery_options, policies, booking_rules, instant_book, version
           FROM listings WHERE id = $1 FOR SHARE"
    } else {
        "SELECT id, owner_id, type, status, title, quantity, time_zone, pricing, service_packages,
                delivery_options, policies, booking_rules, instant_book, version
           FROM listings WHERE id = $1"
    };
    let Some(row) = sqlx::query_as::<_, Row>(sql)
        .bind(listing_id)
        .fetch_optional(conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(BookingTerms {
        listing_id: row.id,
        owner_id: row.owner_id,
        kind: ListingType::parse(&row.r#type)
            .ok_or_else(|| anyhow::anyhow!("listing {} has unknown type {}", row.id, row.r#type))?,
        status: ListingStatus::parse(&row.status).ok_or_else(|| {
            anyhow::anyhow!("listing {} has unknown status {}", row.id, row.status)
        })?,
        title: row.title.unwrap_or_default(),
        quantity: row.quantity,
        time_zone: row
            .time_zone
            .parse()
            .map_err(|_| anyhow::anyhow!("listing {} has unknown time zone", row.id))?,
        pricing: row.pricing.map(serde_json::from_value).transpose()?,
        service_packages: serde_json::from_value(row.service_packages)?,
        delivery: serde_json::from_value(row.delivery_options)?,
        policies: serde_json::from_value(row.policies)?,
        rules: serde_json::from_value(row.booking_rules)?,
        instant_book: row.instant_book,
        version: row.version,
    }))
}
