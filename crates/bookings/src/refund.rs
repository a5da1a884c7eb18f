//! What a cancellation gives back: a pure function of the listing's
//! cancellation policy, the notice given, who cancels and what was paid.
//!
//! | policy   | full refund of the rental | half refund  | nothing     |
//! | -------- | ------------------------- | ------------ | ----------- |
//! | flexible | ≥ 24 h before the start   | until start  | after start |
//! | moderate | ≥ 5 days before           | ≥ 24 h       | later       |
//! | strict   | ≥ 14 days before          | ≥ 7 days     | later       |
//!
//! The deposit is always returned (it is only held). Delivery and protection
//! are returned in full when cancelled before the start (nothing was
//! delivered or covered yet). The service fee is returned only with a full
//! refund of the rental. An owner or an admin cancelling refunds everything.

use chrono::Duration;
use rentify_listings::model::CancellationPolicy;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who cancels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Canceller {
    Renter,
    Owner,
    Admin,
}

/// What the renter paid (or was authorized for), by component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Paid {
    pub subtotal: i64,
    pub service_fee: i64,
    pub delivery_fee: i64,
    pub insurance: i64,
    pub deposit: i64,
}

impl Paid {
    pub fn total(&self) -> i64 {
        self.subtotal + self.service_fee + self.delivery_fee + self.insurance + self.deposit
    }
}

/// The refund, by component, minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refund {
    pub policy: CancellationPolicy,
    pub cancelled_by: Canceller,
    /// Whole hours of notice before the start (negative once started).
    pub notice_hours: i64,
    /// Share of the rental (subtotal) returned, in percent.
    pub rental_percent: u8,
    pub subtotal: i64,
    pub service_fee: i64,
    pub delivery_fee: i64,
    pub insurance: i64,
    pub deposit: i64,
    pub total: i64,
}

/// The rental share a renter gets back with `notice` left before the start.
pub fn rental_percent(policy: CancellationPolicy, notice: Duration) -> u8 {
    let (full, half) = match policy {
        CancellationPolicy::Flexible => (Duration::hours(24), Duration::zero()),
        CancellationPolicy::Moderate => (Duration::days(5), Duration::hours(24)),
        CancellationPolicy::Strict => (Duration::days(14), Duration::days(7)),
    };
    if notice >= full {
        100
    } else if notice > half || (notice == half && half > Duration::zero()) {
        50
    } else {
        0
    }
}

/// The refund for a cancellation made `notice` before the booking's start
/// (negative when it already started).
pub fn refund(
    policy: CancellationPolicy,
    notice: Duration,
    paid: Paid,
    cancelled_by: Canceller,
) -> Refund {
    let before_start = notice > Duration::zero();
    let percent = match cancelled_by {
        Canceller::Owner | Canceller::Admin => 100,
        Canceller::Renter => rental_percent(policy, notice),
    };
    let full = percent == 100;
    let subtotal = (i128::from(paid.subtotal) * i128::from(percent) / 100) as i64;
    let service_fee = if full { paid.service_fee } else { 0 };
    let extras = full || before_start;
    let delivery_fee = if extras { paid.delivery_fee } else { 0 };
    let insurance = if extras { paid.insurance } else { 0 };
    let deposit = paid.deposit;
    Refund {
        policy,
        cancelled_by,
        notice_hours: notice.num_hours(),
        rental_percent: percent,
        subtotal,
        service_fee,
        delivery_fee,
        insurance,
        deposit,
        total: subtotal + service_fee + delivery_fee + insurance + deposit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAID: Paid = Paid {
        subtotal: 10_000,
        service_fee: 1_000,
        delivery_fee: 500,
        insurance: 500,
        deposit: 20_000,
    };

    #[test]
    fn moderate_tiers() {
        let r = |h| {
            refund(
                CancellationPolicy::Moderate,
                Duration::hours(h),
                PAID,
                Canceller::Renter,
            )
        };
        assert_eq!(r(5 * 24).total, PAID.total());
        let half = r(48);
        assert_eq!(
            (half.rental_percent, half.subtotal, half.service_fee),
            (50, 5_000, 0)
        );
        assert_eq!(half.total, 5_000 + 500 + 500 + 20_000);
        let late = r(3);
        assert_eq!((late.subtotal, late.deposit), (0, 20_000));
        assert_eq!(late.total, 500 + 500 + 20_000);
        let started = r(-2);
        assert_eq!(
            started.total, 20_000,
            "after the start only the deposit comes back"
        );
    }

    #[test]
    fn flexible_and_strict_edges() {
        let f = |h| rental_percent(CancellationPolicy::Flexible, Duration::hours(h));
        assert_eq!((f(24), f(23), f(1), f(0), f(-1)), (100, 50, 50, 0, 0));
        let s = |d| rental_percent(CancellationPolicy::Strict, Duration::days(d));
        assert_eq!((s(14), s(13), s(7), s(6)), (100, 50, 50, 0));
    }

    #[test]
    fn an_owner_cancelling_refunds_everything_even_late() {
        let r = refund(
            CancellationPolicy::Strict,
            Duration::hours(1),
            PAID,
            Canceller::Owner,
        );
        assert_eq!(r.total, PAID.total());
    }

    fn policies() -> impl Strategy<Value = CancellationPolicy> {
        prop_oneof![
            Just(CancellationPolicy::Flexible),
            Just(CancellationPolicy::Moderate),
            Just(CancellationPolicy::Strict)
        ]
    }

    fn paid() -> impl Strategy<Value = Paid> {
        (
            0i64..10_000_000,
            0i64..1_000_000,
            0i64..100_000,
            0i64..1_000_000,
            0i64..10_000_000,
        )
            .prop_map(
                |(subtotal, service_fee, delivery_fee, insurance, deposit)| Paid {
                    subtotal,
                    service_fee,
                    delivery_fee,
                    insurance,
                    deposit,
                },
            )
    }

    fn cancellers() -> impl Strategy<Value = Canceller> {
        prop_oneof![
            Just(Canceller::Renter),
            Just(Canceller::Owner),
            Just(Canceller::Admin)
        ]
    }

    proptest! {
        #[test]
        fn a_refund_never_exceeds_what_was_paid(
            policy in policies(), paid in paid(), by in cancellers(),
            notice_min in -(60i64 * 24 * 30)..(60 * 24 * 60),
        ) {
            let r = refund(policy, Duration::minutes(notice_min), paid, by);
            prop_assert!(r.total <= paid.total());
            prop_assert!(r.subtotal <= paid.subtotal && r.subtotal >= 0);
            prop_assert!(r.service_fee <= paid.service_fee);
            prop_assert!(r.delivery_fee <= paid.delivery_fee);
            prop_assert!(r.insurance <= paid.insurance);
            prop_assert_eq!(r.deposit, paid.deposit);
            prop_assert_eq!(r.total, r.subtotal + r.service_fee + r.delivery_fee + r.insurance + r.deposit);
        }

        #[test]
        fn a_refund_never_grows_as_notice_shrinks(
            policy in policies(), paid in paid(), by in cancellers(),
            a in -(60i64 * 24 * 30)..(60 * 24 * 60),
            b in -(60i64 * 24 * 30)..(60 * 24 * 60),
        ) {
            let (more, less) = if a >= b { (a, b) } else { (b, a) };
            let r_more = refund(policy, Duration::minutes(more), paid, by);
            let r_less = refund(policy, Duration::minutes(less), paid, by);
            prop_assert!(r_less.total <= r_more.total);
            prop_assert!(r_less.subtotal <= r_more.subtotal);
        }
    }
}
