//! The price of a booking: a pure function of the listing's rates, the
//! booked time in the listing's time zone, and the renter's choices.
//!
//! Time-based rates are combined the way a renter would choose them: the
//! rental is split into whole local weeks, whole local days and remaining
//! hours, and every sensible way to pay for that (exact units, or rounding
//! the hours up to a day, or the rest up to a week, or hourly/daily only) is
//! priced; the cheapest wins. Weeks and days are calendar units in the
//! listing's zone, so a day across a daylight-saving change is one day, not
//! 23 or 25 hours.

use chrono::{DateTime, Days, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use rentify_listings::model::{Pricing, ServicePackage};
use rentify_platform::money::Currency;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The renter's service fee, in basis points of the subtotal (10 %).
pub const SERVICE_FEE_BPS: i64 = 1_000;
/// The `basic` protection plan, in basis points of the subtotal (5 %).
pub const PROTECTION_BASIC_BPS: i64 = 500;
/// The `premium` protection plan, in basis points of the subtotal (10 %).
pub const PROTECTION_PREMIUM_BPS: i64 = 1_000;

/// Damage protection the renter buys with the booking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionPlan {
    #[default]
    None,
    Basic,
    Premium,
}

impl ProtectionPlan {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic => "basic",
            Self::Premium => "premium",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::None, Self::Basic, Self::Premium]
            .into_iter()
            .find(|p| p.as_str() == value)
    }

    fn basis_points(self) -> i64 {
        match self {
            Self::None => 0,
            Self::Basic => PROTECTION_BASIC_BPS,
            Self::Premium => PROTECTION_PREMIUM_BPS,
        }
    }
}

/// Everything the price depends on.
#[derive(Clone, Copy, Debug)]
pub struct PriceRequest<'a> {
    pub pricing: &'a Pricing,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub time_zone: Tz,
    /// A service package replaces the time-based rates.
    pub package: Option<&'a ServicePackage>,
    /// The listing's delivery fee when the renter chose delivery, else 0.
    pub delivery_fee: i64,
    pub protection: ProtectionPlan,
}

/// The booked time as calendar units in the listing's zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CalendarDuration {
    pub weeks: i64,
    pub days: i64,
    /// Started hours after the whole days (rounded up).
    pub hours: i64,
}

/// What a line item charges for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LineItemKind {
    Weekly,
    Daily,
    Hourly,
    Package,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineItem {
    pub kind: LineItemKind,
    pub quantity: i64,
    pub unit_amount: i64,
    pub amount: i64,
}

/// Fees on top of the subtotal (the seed's `{service_fee, delivery_fee,
/// insurance}`), minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Fees {
    pub service_fee: i64,
    pub delivery_fee: i64,
    /// The protection plan's price.
    pub insurance: i64,
}

impl Fees {
    pub fn sum(&self) -> Option<i64> {
        self.service_fee
            .checked_add(self.delivery_fee)?
            .checked_add(self.insurance)
    }
}

/// A priced booking; stored as the booking's immutable `pricing_snapshot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quote {
    pub currency: Currency,
    pub duration: CalendarDuration,
    pub line_items: Vec<LineItem>,
    /// Sum of the line items.
    pub subtotal: i64,
    pub fees: Fees,
    /// Refundable; held, not charged.
    pub deposit: i64,
    /// `subtotal + fees + deposit`: what the renter's card is authorized for.
    pub total: i64,
}

/// Why a booking cannot be priced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("the booking must end after it starts")]
    EmptyRange,
    #[error("the listing has no rate that can price this duration")]
    NoApplicableRate,
    #[error("the amounts are too large")]
    Overflow,
    #[error("amounts cannot be negative")]
    Negative,
}

/// Prices `req`. Pure: the same request always gives the same quote.
pub fn price(req: &PriceRequest<'_>) -> Result<Quote, PricingError> {
    if req.end <= req.start {
        return Err(PricingError::EmptyRange);
    }
    let p = req.pricing;
    if [p.hourly, p.daily, p.weekly]
        .into_iter()
        .flatten()
        .chain([p.deposit, req.delivery_fee])
        .chain(req.package.map(|pk| pk.price))
        .any(|v| v < 0)
    {
        return Err(PricingError::Negative);
    }
    let duration = calendar_duration(req.start, req.end, req.time_zone);
    let line_items = match req.package {
        Some(package) => vec![LineItem {
            kind: LineItemKind::Package,
            quantity: 1,
            unit_amount: package.price,
            amount: package.price,
        }],
        None => cheapest_combination(req, duration)?,
    };
    let subtotal = line_items
        .iter()
        .try_fold(0i64, |acc, item| acc.checked_add(item.amount))
        .ok_or(PricingError::Overflow)?;
    let fees = Fees {
        service_fee: basis_points(subtotal, SERVICE_FEE_BPS)?,
        delivery_fee: req.delivery_fee,
        insurance: basis_points(subtotal, req.protection.basis_points())?,
    };
    let total = fees
        .sum()
        .and_then(|f| f.checked_add(subtotal))
        .and_then(|t| t.checked_add(p.deposit))
        .ok_or(PricingError::Overflow)?;
    Ok(Quote {
        currency: p.currency,
        duration,
        line_items,
        subtotal,
        fees,
        deposit: p.deposit,
        total,
    })
}

/// `amount × bps / 10 000`, rounded half up.
fn basis_points(amount: i64, bps: i64) -> Result<i64, PricingError> {
    let scaled = i128::from(amount) * i128::from(bps) + 5_000;
    i64::try_from(scaled / 10_000).map_err(|_| PricingError::Overflow)
}

/// `start` plus `days` calendar days in `tz`, keeping the local wall time.
/// A wall time that does not exist (spring forward) moves to the first one
/// after the gap; an ambiguous one (fall back) takes the earlier instant.
pub fn plus_local_days(start: DateTime<Utc>, tz: Tz, days: u64) -> DateTime<Utc> {
    let local = start.with_timezone(&tz).naive_local();
    let Some(target) = local.checked_add_days(Days::new(days)) else {
        return DateTime::<Utc>::MAX_UTC;
    };
    let mut probe = target;
    // A DST gap is at most a few hours; step through it.
    for _ in 0..=24 * 4 {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += Duration::minutes(15);
    }
    start + Duration::days(days as i64)
}

/// Splits `[start, end)` into whole local weeks, then whole local days, then
/// started hours (real elapsed time, rounded up).
pub fn calendar_duration(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> CalendarDuration {
    // Estimate from elapsed time, then correct for DST by stepping.
    let elapsed_days = (end - start).num_days().max(0) as u64;
    let mut total_days = elapsed_days.saturating_sub(1);
    while plus_local_days(start, tz, total_days + 1) <= end {
        total_days += 1;
    }
    while total_days > 0 && plus_local_days(start, tz, total_days) > end {
        total_days -= 1;
    }
    let after_days = plus_local_days(start, tz, total_days);
    let rest = (end - after_days).num_seconds().max(0);
    CalendarDuration {
        weeks: (total_days / 7) as i64,
        days: (total_days % 7) as i64,
        hours: (rest + 3_599) / 3_600,
    }
}

/// Real started hours of `[start, end)`, for all-hourly pricing.
fn elapsed_hours(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    ((end - start).num_seconds() + 3_599) / 3_600
}

fn cheapest_combination(
    req: &PriceRequest<'_>,
    d: CalendarDuration,
) -> Result<Vec<LineItem>, PricingError> {
    let p = req.pricing;
    let (w, dd, h) = (d.weeks, d.days, d.hours);
    let hours_after_weeks = elapsed_hours(
        plus_local_days(req.start, req.time_zone, (w * 7) as u64),
        req.end,
    );
    // (weeks, days, hours) ways to pay for the duration.
    let mut candidates = vec![
        (w, dd, h),
        (0, w * 7 + dd, h),
        (0, 0, elapsed_hours(req.start, req.end)),
        (w, 0, hours_after_weeks),
    ];
    if h > 0 {
        candidates.push((w, dd + 1, 0));
        candidates.push((0, w * 7 + dd + 1, 0));
    }
    if dd > 0 || h > 0 {
        candidates.push((w + 1, 0, 0));
    }
    let mut best: Option<(i64, usize, Vec<LineItem>)> = None;
    let mut overflowed = false;
    for (nw, nd, nh) in candidates {
        let mut items = Vec::new();
        let mut feasible = true;
        for (count, rate, kind) in [
            (nw, p.weekly, LineItemKind::Weekly),
            (nd, p.daily, LineItemKind::Daily),
            (nh, p.hourly, LineItemKind::Hourly),
        ] {
            if count == 0 {
                continue;
            }
            match rate {
                Some(rate) => match rate.checked_mul(count) {
                    Some(amount) => items.push(LineItem {
                        kind,
                        quantity: count,
                        unit_amount: rate,
                        amount,
                    }),
                    None => {
                        overflowed = true;
                        feasible = false;
                    }
                },
                None => feasible = false,
            }
        }
        if !feasible || items.is_empty() {
            continue;
        }
        let Some(cost) = items
            .iter()
            .try_fold(0i64, |acc, item| acc.checked_add(item.amount))
        else {
            overflowed = true;
            continue;
        };
        let better = match &best {
            None => true,
            Some((c, n, _)) => cost < *c || (cost == *c && items.len() < *n),
        };
        if better {
            best = Some((cost, items.len(), items));
        }
    }
    match best {
        Some((_, _, items)) => Ok(items),
        None if overflowed => Err(PricingError::Overflow),
        None => Err(PricingError::NoApplicableRate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn rates(hourly: Option<i64>, daily: Option<i64>, weekly: Option<i64>) -> Pricing {
        Pricing {
            hourly,
            daily,
            weekly,
            deposit: 10_000,
            currency: eur(),
        }
    }

    fn at(tz: Tz, y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, m, d, h, 0, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn quote(p: &Pricing, start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> Quote {
        price(&PriceRequest {
            pricing: p,
            start,
            end,
            time_zone: tz,
            package: None,
            delivery_fee: 0,
            protection: ProtectionPlan::None,
        })
        .unwrap()
    }

    #[test]
    fn three_hours_are_three_hourly_units() {
        let tz = chrono_tz::UTC;
        let q = quote(
            &rates(Some(500), Some(3_000), None),
            at(tz, 2027, 3, 1, 9),
            at(tz, 2027, 3, 1, 12),
            tz,
        );
        assert_eq!(q.subtotal, 1_500);
        assert_eq!(q.line_items.len(), 1);
        assert_eq!(q.fees.service_fee, 150);
        assert_eq!(q.total, 1_500 + 150 + 10_000);
    }

    #[test]
    fn many_hours_round_up_to_a_cheaper_day() {
        let tz = chrono_tz::UTC;
        let q = quote(
            &rates(Some(500), Some(3_000), None),
            at(tz, 2027, 3, 1, 8),
            at(tz, 2027, 3, 1, 20),
            tz,
        );
        assert_eq!(q.subtotal, 3_000, "12 h × 500 = 6 000 > one day at 3 000");
    }

    #[test]
    fn six_days_cost_no_more_than_a_week() {
        let tz = chrono_tz::UTC;
        let q = quote(
            &rates(None, Some(3_000), Some(15_000)),
            at(tz, 2027, 3, 1, 10),
            at(tz, 2027, 3, 7, 10),
            tz,
        );
        assert_eq!(q.subtotal, 15_000);
        assert_eq!(q.line_items[0].kind, LineItemKind::Weekly);
    }

    #[test]
    fn a_weekend_across_the_spring_dst_change_is_two_days() {
        // Europe/Berlin moves from +01:00 to +02:00 on 2027-03-28 at 02:00:
        // Saturday 10:00 to Monday 10:00 local is 47 real hours, 2 days.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let (start, end) = (at(tz, 2027, 3, 27, 10), at(tz, 2027, 3, 29, 10));
        assert_eq!((end - start).num_hours(), 47);
        let d = calendar_duration(start, end, tz);
        assert_eq!(
            d,
            CalendarDuration {
                weeks: 0,
                days: 2,
                hours: 0
            }
        );
        let q = quote(&rates(Some(1_000), Some(4_000), None), start, end, tz);
        assert_eq!(q.subtotal, 8_000);
    }

    #[test]
    fn a_weekend_across_the_autumn_dst_change_is_two_days() {
        // 2027-10-31 03:00 → 02:00 in Berlin: 49 real hours, still 2 days.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let (start, end) = (at(tz, 2027, 10, 30, 10), at(tz, 2027, 11, 1, 10));
        assert_eq!((end - start).num_hours(), 49);
        assert_eq!(
            calendar_duration(start, end, tz),
            CalendarDuration {
                weeks: 0,
                days: 2,
                hours: 0
            }
        );
        // In UTC the same instants are two days and one hour.
        assert_eq!(
            calendar_duration(start, end, chrono_tz::UTC),
            CalendarDuration {
                weeks: 0,
                days: 2,
                hours: 1
            }
        );
    }

    #[test]
    fn packages_replace_time_rates_and_fees_follow_the_plan() {
        let tz = chrono_tz::UTC;
        let package = ServicePackage {
            name: "wedding".into(),
            price: 80_000,
            description: None,
        };
        let q = price(&PriceRequest {
            pricing: &rates(Some(5_000), None, None),
            start: at(tz, 2027, 6, 1, 10),
            end: at(tz, 2027, 6, 1, 18),
            time_zone: tz,
            package: Some(&package),
            delivery_fee: 1_500,
            protection: ProtectionPlan::Premium,
        })
        .unwrap();
        assert_eq!(q.subtotal, 80_000);
        assert_eq!(
            q.fees,
            Fees {
                service_fee: 8_000,
                delivery_fee: 1_500,
                insurance: 8_000
            }
        );
        assert_eq!(q.total, 80_000 + 8_000 + 1_500 + 8_000 + 10_000);
    }

    #[test]
    fn a_listing_without_a_usable_rate_cannot_be_priced() {
        let tz = chrono_tz::UTC;
        let err = price(&PriceRequest {
            pricing: &rates(None, None, None),
            start: at(tz, 2027, 6, 1, 10),
            end: at(tz, 2027, 6, 1, 12),
            time_zone: tz,
            package: None,
            delivery_fee: 0,
            protection: ProtectionPlan::None,
        })
        .unwrap_err();
        assert_eq!(err, PricingError::NoApplicableRate);
    }

    fn zones() -> impl Strategy<Value = Tz> {
        prop_oneof![
            Just(chrono_tz::UTC),
            Just(chrono_tz::Europe::Berlin),
            Just(chrono_tz::America::New_York),
            Just(chrono_tz::Australia::Lord_Howe),
        ]
    }

    proptest! {
        #[test]
        fn totals_add_up_and_beat_every_single_rate(
            hourly in proptest::option::of(1i64..10_000),
            daily in proptest::option::of(1i64..100_000),
            weekly in proptest::option::of(1i64..500_000),
            deposit in 0i64..1_000_000,
            delivery_fee in 0i64..10_000,
            plan in prop_oneof![Just(ProtectionPlan::None), Just(ProtectionPlan::Basic), Just(ProtectionPlan::Premium)],
            start_min in 0i64..(2 * 366 * 24 * 60),
            len_min in 1i64..(60 * 24 * 60),
            tz in zones(),
        ) {
            let pricing = Pricing { hourly, daily, weekly, deposit, currency: eur() };
            let start = at(chrono_tz::UTC, 2027, 1, 1, 0) + Duration::minutes(start_min);
            let end = start + Duration::minutes(len_min);
            let req = PriceRequest { pricing: &pricing, start, end, time_zone: tz, package: None, delivery_fee, protection: plan };
            match price(&req) {
                Ok(q) => {
                    let items: i64 = q.line_items.iter().map(|i| i.amount).sum();
                    prop_assert_eq!(q.subtotal, items);
                    for i in &q.line_items {
                        prop_assert_eq!(i.amount, i.quantity * i.unit_amount);
                        prop_assert!(i.quantity > 0);
                    }
                    prop_assert_eq!(q.total, q.subtotal + q.fees.service_fee + q.fees.delivery_fee + q.fees.insurance + q.deposit);
                    prop_assert!(q.subtotal > 0);
                    prop_assert!(q.fees.service_fee <= q.subtotal);
                    // Never dearer than paying the whole time at one rate.
                    if let Some(h) = hourly {
                        prop_assert!(q.subtotal <= h * elapsed_hours(start, end));
                    }
                    let d = q.duration;
                    if let Some(day) = daily {
                        let days = d.weeks * 7 + d.days + i64::from(d.hours > 0);
                        prop_assert!(q.subtotal <= day * days);
                    }
                    if let Some(week) = weekly {
                        let weeks = d.weeks + i64::from(d.days > 0 || d.hours > 0);
                        prop_assert!(q.subtotal <= week * weeks);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e, PricingError::NoApplicableRate);
                    prop_assert!(hourly.is_none() && daily.is_none() && weekly.is_none());
                }
            }
        }

        #[test]
        fn the_calendar_duration_covers_the_booking(
            start_min in 0i64..(2 * 366 * 24 * 60),
            len_min in 1i64..(60 * 24 * 60),
            tz in zones(),
        ) {
            let start = at(chrono_tz::UTC, 2027, 1, 1, 0) + Duration::minutes(start_min);
            let end = start + Duration::minutes(len_min);
            let d = calendar_duration(start, end, tz);
            let days = (d.weeks * 7 + d.days) as u64;
            let whole = plus_local_days(start, tz, days);
            prop_assert!(whole <= end);
            prop_assert!(plus_local_days(start, tz, days + 1) > end);
            prop_assert!(whole + Duration::hours(d.hours) >= end);
            prop_assert!(d.days < 7);
        }
    }
}
