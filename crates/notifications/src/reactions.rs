//! Who is told what when a booking moves (pure: no I/O).
//!
//! | event | recipients | category | critical |
//! | --- | --- | --- | --- |
//! | `booking.requested` | owner | bookings | no |
//! | `booking.approved` | renter; the owner too unless the owner approved (instant bookings, confirmed payments) | bookings | no |
//! | `booking.declined` | renter | bookings | no |
//! | `booking.cancelled` | both | bookings, or payments for `payment_declined`/`payment_timeout` | yes |
//! | `booking.payment_failed` | renter | payments | yes |
//! | `booking.started`, `booking.extended` | both but the one who did it | bookings | no |
//! | `booking.completed`, `booking.disputed`, `booking.resolved` | both | bookings | no |
//!
//! A completion also asks both parties for a review later (`review_prompt`,
//! category reviews). `booking.pending_payment` tells nobody: the renter is
//! waiting for the answer in the request, and the owner has nothing to do yet.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::model::Category;

/// The fields of a `booking.*` payload notifications use.
#[derive(Clone, Debug, Deserialize)]
pub struct BookingPayload {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub renter_id: Uuid,
    pub owner_id: Uuid,
    pub status: String,
    #[serde(default)]
    pub from_status: Option<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub total: i64,
    pub currency: String,
    #[serde(default)]
    pub actor_id: Option<Uuid>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub refund: Option<serde_json::Value>,
    #[serde(default)]
    pub child_end_time: Option<DateTime<Utc>>,
}

/// A party of a booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Renter,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Renter => "renter",
            Role::Owner => "owner",
        }
    }
}

/// One notification to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub user_id: Uuid,
    pub role: Role,
    /// The template kind (see `templates`).
    pub template: &'static str,
    pub category: Category,
    pub critical: bool,
}

/// Reasons of a cancellation that mean the payment failed.
const PAYMENT_REASONS: [&str; 2] = ["payment_declined", "payment_timeout"];

impl BookingPayload {
    pub fn party(&self, role: Role) -> Uuid {
        match role {
            Role::Renter => self.renter_id,
            Role::Owner => self.owner_id,
        }
    }

    /// Who acted, as templates name them.
    pub fn actor(&self) -> &'static str {
        match self.actor_id {
            None => "system",
            Some(id) if id == self.renter_id => "renter",
            Some(id) if id == self.owner_id => "owner",
            Some(_) => "admin",
        }
    }

    fn did_it(&self, role: Role) -> bool {
        self.actor_id == Some(self.party(role))
    }
}

/// The booking events anyone is told about; the others are not even parsed
/// (a new event type with another payload must not fail the consumer).
pub const REACTED: [&str; 10] = [
    "booking.requested",
    "booking.approved",
    "booking.declined",
    "booking.cancelled",
    "booking.payment_failed",
    "booking.started",
    "booking.completed",
    "booking.extended",
    "booking.disputed",
    "booking.resolved",
];

/// The notifications `event_type` calls for.
pub fn plan(event_type: &str, booking: &BookingPayload) -> Vec<Planned> {
    use Role::{Owner, Renter};
    let both = [Renter, Owner];
    let (roles, template, category, critical): (Vec<Role>, &'static str, Category, bool) =
        match event_type {
            "booking.requested" => (vec![Owner], "booking.requested", Category::Bookings, false),
            "booking.approved" => {
                let mut roles = vec![Renter];
                if !booking.did_it(Owner) {
                    roles.push(Owner);
                }
                (roles, "booking.approved", Category::Bookings, false)
            }
            "booking.declined" => (vec![Renter], "booking.declined", Category::Bookings, false),
            "booking.cancelled" => {
                if booking
                    .reason
                    .as_deref()
                    .is_some_and(|r| PAYMENT_REASONS.contains(&r))
                {
                    (both.to_vec(), "payment_failed", Category::Payments, true)
                } else {
                    (both.to_vec(), "booking.cancelled", Category::Bookings, true)
                }
            }
            "booking.payment_failed" => (vec![Renter], "payment_failed", Category::Payments, true),
            "booking.started" | "booking.extended" => {
                let roles = both.into_iter().filter(|r| !booking.did_it(*r)).collect();
                let template = if event_type == "booking.started" {
                    "booking.started"
                } else {
                    "booking.extended"
                };
                (roles, template, Category::Bookings, false)
            }
            "booking.completed" => (
                both.to_vec(),
                "booking.completed",
                Category::Bookings,
                false,
            ),
            "booking.disputed" => (both.to_vec(), "booking.disputed", Category::Bookings, false),
            "booking.resolved" => (both.to_vec(), "booking.resolved", Category::Bookings, false),
            _ => return Vec::new(),
        };
    roles
        .into_iter()
        .map(|role| Planned {
            user_id: booking.party(role),
            role,
            template,
            category,
            critical,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payload(actor: Option<Role>, reason: Option<&str>) -> BookingPayload {
        let renter_id = Uuid::now_v7();
        let owner_id = Uuid::now_v7();
        BookingPayload {
            booking_id: Uuid::now_v7(),
            listing_id: Uuid::now_v7(),
            renter_id,
            owner_id,
            status: "x".into(),
            from_status: None,
            start_time: Utc::now(),
            end_time: Utc::now(),
            total: 100,
            currency: "EUR".into(),
            actor_id: actor.map(|r| match r {
                Role::Renter => renter_id,
                Role::Owner => owner_id,
            }),
            reason: reason.map(str::to_owned),
            refund: None,
            child_end_time: None,
        }
    }

    fn roles(event: &str, b: &BookingPayload) -> Vec<Role> {
        plan(event, b).into_iter().map(|p| p.role).collect()
    }

    #[test]
    fn the_table_of_reactions() {
        use Role::{Owner, Renter};
        let b = payload(Some(Renter), None);
        assert_eq!(roles("booking.requested", &b), [Owner]);
        assert_eq!(roles("booking.declined", &b), [Renter]);
        assert_eq!(roles("booking.completed", &b), [Renter, Owner]);
        assert_eq!(roles("booking.disputed", &b), [Renter, Owner]);
        assert!(plan("booking.pending_payment", &b).is_empty());
        assert!(plan("listing.published", &b).is_empty());
        // The owner approving is not told; an instant or paid booking tells both.
        assert_eq!(
            roles("booking.approved", &payload(Some(Owner), None)),
            [Renter]
        );
        assert_eq!(
            roles("booking.approved", &payload(None, None)),
            [Renter, Owner]
        );
        // The one who started or extended it is not told.
        assert_eq!(
            roles("booking.started", &payload(Some(Owner), None)),
            [Renter]
        );
        assert_eq!(
            roles("booking.extended", &payload(Some(Renter), None)),
            [Owner]
        );
    }

    #[test]
    fn cancellations_are_critical_and_payment_failures_are_payments() {
        let cancelled = plan("booking.cancelled", &payload(Some(Role::Renter), None));
        assert_eq!(cancelled.len(), 2);
        assert!(
            cancelled
                .iter()
                .all(|p| p.critical && p.category == Category::Bookings)
        );
        for reason in PAYMENT_REASONS {
            let plan = plan("booking.cancelled", &payload(None, Some(reason)));
            assert!(plan.iter().all(|p| p.critical
                && p.category == Category::Payments
                && p.template == "payment_failed"));
        }
        let failed = plan(
            "booking.payment_failed",
            &payload(None, Some("card_declined")),
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].role, Role::Renter);
        assert!(failed[0].critical && failed[0].category == Category::Payments);
    }

    proptest! {
        #[test]
        fn recipients_are_parties_once_and_templates_exist(
            event in prop::sample::select(vec![
                "booking.requested", "booking.approved", "booking.declined", "booking.cancelled",
                "booking.payment_failed", "booking.started", "booking.completed", "booking.extended",
                "booking.disputed", "booking.resolved", "booking.pending_payment",
            ]),
            actor in prop::option::of(prop::sample::select(vec![Role::Renter, Role::Owner])),
            reason in prop::option::of(prop::sample::select(vec!["payment_declined", "payment_timeout", "expired"])),
        ) {
            let b = payload(actor, reason);
            let plan = plan(event, &b);
            prop_assert_eq!(plan.is_empty(), !REACTED.contains(&event));
            let mut users: Vec<Uuid> = plan.iter().map(|p| p.user_id).collect();
            users.dedup();
            prop_assert_eq!(users.len(), plan.len());
            for p in &plan {
                prop_assert!(p.user_id == b.renter_id || p.user_id == b.owner_id);
                prop_assert_eq!(p.user_id, b.party(p.role));
                prop_assert!(crate::templates::KINDS.contains(&p.template));
                prop_assert_eq!(p.critical, event == "booking.cancelled" || event == "booking.payment_failed");
            }
        }
    }
}
