//! A booking as stored and as shown: the row, the public view (with the
//! counterparty whose contact details are revealed once approved), and the
//! payload of its outbox events.

use chrono::{DateTime, Utc};
use rentify_identity::ContactDetails;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    pricing::{Fees, ProtectionPlan, Quote},
    refund::Refund,
    state::Status,
};

/// How the renter gets the item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMethod {
    Pickup,
    Delivery,
}

impl DeliveryMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pickup => "pickup",
            Self::Delivery => "delivery",
        }
    }
}

/// Where a delivery goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, validator::Validate)]
#[serde(deny_unknown_fields)]
pub struct DeliveryAddress {
    #[validate(length(min = 1, max = 200))]
    pub line1: String,
    #[serde(default)]
    #[validate(length(max = 200))]
    pub line2: Option<String>,
    #[validate(length(min = 1, max = 100))]
    pub city: String,
    #[validate(length(min = 1, max = 20))]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    #[validate(length(equal = 2))]
    pub country: String,
    /// For the courier.
    #[serde(default)]
    #[validate(length(max = 500))]
    pub instructions: Option<String>,
}

/// Every column of `bookings` the module reads, in [`COLUMNS`] order. Its
/// JSON is the row as `jsonb_populate_record(NULL::bookings, ..)` reads it
/// (the placement; `idempotency_key`, the one column not here, is added by
/// `place_booking`).
#[derive(Clone, Debug, sqlx::FromRow, Serialize)]
pub struct BookingRow {
    pub id: Uuid,
    pub listing_id: Uuid,
    pub renter_id: Uuid,
    pub owner_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub unit: i32,
    pub status: String,
    pub status_reason: Option<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub time_zone: String,
    pub delivery_method: String,
    pub delivery_address: Option<serde_json::Value>,
    pub protection_plan: String,
    pub service_package: Option<String>,
    pub cancellation_policy: String,
    pub currency: String,
    pub pricing_snapshot: serde_json::Value,
    pub subtotal: i64,
    pub fees: serde_json::Value,
    pub deposit: i64,
    pub total: i64,
    pub approval_expires_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    pub payment_method_id: Option<Uuid>,
    pub payment_expires_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<Uuid>,
    pub refund: Option<serde_json::Value>,
    pub dispute: Option<serde_json::Value>,
    pub resolution: Option<serde_json::Value>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A query returning [`BookingRow`]s, for helpers that take a filter and
/// its binds (the timers' expiry).
pub type BookingQuery<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, BookingRow, sqlx::postgres::PgArguments>;

/// The column list of [`BookingRow`], for `SELECT` and `RETURNING`.
pub const COLUMNS: &str =
    "id, listing_id, renter_id, owner_id, parent_id, unit, status, status_reason,
    start_time, end_time, time_zone, delivery_method, delivery_address, protection_plan,
    service_package, cancellation_policy, currency::text AS currency, pricing_snapshot, subtotal,
    fees, deposit, total, approval_expires_at, approved_at, payment_method_id, payment_expires_at,
    cancelled_by, refund, dispute,
    resolution, version, created_at, updated_at";

impl BookingRow {
    pub fn status(&self) -> anyhow::Result<Status> {
        Status::parse(&self.status).ok_or_else(|| {
            anyhow::anyhow!("booking {} has unknown status {}", self.id, self.status)
        })
    }

    /// The other party of `viewer`, if `viewer` is one.
    pub fn counterparty_of(&self, viewer: Uuid) -> Option<Uuid> {
        if viewer == self.renter_id {
            Some(self.owner_id)
        } else if viewer == self.owner_id {
            Some(self.renter_id)
        } else {
            None
        }
    }

    /// Contact details are shared once the booking was approved (and stay
    /// shared if it is cancelled later); never for a mere request.
    pub fn reveals_contact(&self) -> bool {
        self.approved_at.is_some()
    }

    /// The view for `viewer`; `contact` is the counterparty's, looked up by
    /// the caller only when [`reveals_contact`](Self::reveals_contact).
    pub fn view(&self, viewer: Uuid, contact: Option<ContactDetails>) -> Booking {
        let json = |v: &serde_json::Value| v.clone();
        Booking {
            id: self.id,
            object: "booking",
            listing_id: self.listing_id,
            renter_id: self.renter_id,
            owner_id: self.owner_id,
            parent_id: self.parent_id,
            unit: self.unit,
            status: self.status.clone(),
            status_reason: self.status_reason.clone(),
            start_time: self.start_time,
            end_time: self.end_time,
            time_zone: self.time_zone.clone(),
            delivery_method: self.delivery_method.clone(),
            delivery_address: self.delivery_address.as_ref().map(json),
            protection_plan: self.protection_plan.clone(),
            service_package: self.service_package.clone(),
            cancellation_policy: self.cancellation_policy.clone(),
            pricing_snapshot: json(&self.pricing_snapshot),
            subtotal: self.subtotal,
            fees: json(&self.fees),
            deposit: self.deposit,
            total: self.total,
            currency: self.currency.clone(),
            refund: self.refund.as_ref().map(json),
            dispute: self.dispute.as_ref().map(json),
            resolution: self.resolution.as_ref().map(json),
            approval_expires_at: self.approval_expires_at,
            approved_at: self.approved_at,
            payment_method_id: self.payment_method_id,
            payment_expires_at: self.payment_expires_at,
            counterparty: self.counterparty_of(viewer).map(|id| Counterparty {
                id,
                contact: if self.reveals_contact() {
                    contact
                } else {
                    None
                },
            }),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A booking.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Booking {
    pub id: Uuid,
    /// Always `booking`.
    #[schema(example = "booking")]
    pub object: &'static str,
    pub listing_id: Uuid,
    pub renter_id: Uuid,
    pub owner_id: Uuid,
    /// The booking this one extends.
    pub parent_id: Option<Uuid>,
    /// Which unit of the listing (0-based) the booking holds.
    pub unit: i32,
    #[schema(value_type = Status)]
    pub status: String,
    /// Why the booking reached its status, e.g. `approval_timeout`.
    pub status_reason: Option<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// The listing's IANA zone at booking time.
    pub time_zone: String,
    #[schema(value_type = DeliveryMethod)]
    pub delivery_method: String,
    #[schema(value_type = Option<DeliveryAddress>)]
    pub delivery_address: Option<serde_json::Value>,
    #[schema(value_type = ProtectionPlan)]
    pub protection_plan: String,
    pub service_package: Option<String>,
    /// `flexible`, `moderate` or `strict`: decides the refund.
    pub cancellation_policy: String,
    /// The price as quoted at booking time; never changes.
    #[schema(value_type = Quote)]
    pub pricing_snapshot: serde_json::Value,
    /// Minor units of `currency`.
    pub subtotal: i64,
    #[schema(value_type = Fees)]
    pub fees: serde_json::Value,
    pub deposit: i64,
    pub total: i64,
    pub currency: String,
    /// Set when cancelled.
    #[schema(value_type = Option<Refund>)]
    pub refund: Option<serde_json::Value>,
    /// `{reason, opened_by, opened_at}` once disputed.
    #[schema(value_type = Option<Object>)]
    pub dispute: Option<serde_json::Value>,
    /// `{resolution, note, resolved_by, resolved_at}` once resolved.
    #[schema(value_type = Option<Object>)]
    pub resolution: Option<serde_json::Value>,
    /// Until then a request holds its slot; then it is declined.
    pub approval_expires_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    /// The card charged (`null` for a booking with nothing to pay).
    pub payment_method_id: Option<Uuid>,
    /// While `pending_payment`: until then the booking holds its unit
    /// waiting for the authorization; then it is cancelled
    /// (`payment_timeout`).
    pub payment_expires_at: Option<DateTime<Utc>>,
    /// The other party, for the renter or the owner (`null` for others).
    pub counterparty: Option<Counterparty>,
    /// Bumped by every transition.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The other party of a booking.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Counterparty {
    pub id: Uuid,
    /// Revealed once the booking is approved; `null` before.
    pub contact: Option<ContactDetails>,
}

/// The payload of every `booking.*` outbox event.
#[derive(Clone, Debug, Serialize)]
pub struct EventPayload<'a> {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub renter_id: Uuid,
    pub owner_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub unit: i32,
    pub status: &'a str,
    pub from_status: Option<&'a str>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub total: i64,
    pub currency: &'a str,
    /// `null` for the system (timers).
    pub actor_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<&'a serde_json::Value>,
    /// For `booking.extended`: the child booking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_booking_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child_end_time: Option<DateTime<Utc>>,
}

impl BookingRow {
    pub fn event_payload<'a>(
        &'a self,
        from_status: Option<&'a str>,
        actor_id: Option<Uuid>,
        reason: Option<&'a str>,
    ) -> EventPayload<'a> {
        EventPayload {
            booking_id: self.id,
            listing_id: self.listing_id,
            renter_id: self.renter_id,
            owner_id: self.owner_id,
            parent_id: self.parent_id,
            unit: self.unit,
            status: &self.status,
            from_status,
            start_time: self.start_time,
            end_time: self.end_time,
            total: self.total,
            currency: &self.currency,
            actor_id,
            reason,
            approval_expires_at: self.approval_expires_at,
            refund: self.refund.as_ref(),
            child_booking_id: None,
            child_end_time: None,
        }
    }
}
