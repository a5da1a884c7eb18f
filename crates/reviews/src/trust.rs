//! The trust score: how much the marketplace vouches for a user, 0 to 100,
//! as a pure function of their signals, so the rule can be read, tested and
//! changed in one place (the `trust` consumer in [`crate::signals`] gathers
//! the signals and stores the result).
//!
//! | component | points | from |
//! | --- | --- | --- |
//! | `identity` | 25 | the KYC provider verified their identity |
//! | `contact` | 10 | 5 each for a verified email and phone |
//! | `reviews` | 30 | the mean rating received, pulled towards 3.5 by 5 imaginary reviews, so one review does not make or break anyone |
//! | `response_time` | 10 | full within 1 h of a request, none at 24 h (the approval window); half for users never asked |
//! | `cancellations` | 10 | the share of their bookings they cancelled (2 clean bookings assumed); none at 25 % |
//! | `disputes` | 10 | the share of their bookings that were disputed (same prior); none at 20 % |
//! | `experience` | 5 | completed bookings, full at 10 |
//!
//! A newcomer with nothing verified scores 44 (the priors and neutral
//! halves): enough to rent, visibly short of a verified, well-reviewed
//! regular (99).
//! The score never goes down when a good signal improves (verification, a
//! better mean rating, a faster answer, fewer cancellations or disputes,
//! more completed bookings) and stays within 0..=100 (property-tested).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What is known about a user, as the score needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signals {
    pub identity_verified: bool,
    pub email_verified: bool,
    pub phone_verified: bool,
    /// Rolling mean time to answer a booking request, in seconds (owners);
    /// `None` for users never asked.
    pub response_time_secs: Option<f64>,
    /// Bookings they took part in (as renter or owner) that got past the
    /// payment: the denominator of the rates.
    pub bookings: u32,
    pub completed: u32,
    /// Bookings they cancelled themselves.
    pub cancelled: u32,
    pub disputed: u32,
    /// Mean of the published, visible reviews they received.
    pub rating_avg: Option<f64>,
    pub rating_count: u32,
}

/// One part of the score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = TrustComponent)]
pub struct Component {
    /// What this part contributes (0..=`max`), to 2 decimals.
    pub points: f64,
    pub max: f64,
    /// The signal as scored: a count, a rate, a prior-adjusted mean,
    /// seconds; `null` when unknown.
    pub value: Option<f64>,
}

/// The score's parts; they add up to the score (before rounding).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = TrustComponents)]
pub struct Components {
    pub identity: Component,
    pub contact: Component,
    pub reviews: Component,
    pub response_time: Component,
    pub cancellations: Component,
    pub disputes: Component,
    pub experience: Component,
}

#[cfg(test)]
impl Components {
    fn all(&self) -> [Component; 7] {
        [
            self.identity,
            self.contact,
            self.reviews,
            self.response_time,
            self.cancellations,
            self.disputes,
            self.experience,
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrustScore {
    /// 0..=100.
    pub score: u8,
    pub components: Components,
}

const IDENTITY_MAX: f64 = 25.0;
const CONTACT_EACH: f64 = 5.0;
const REVIEWS_MAX: f64 = 30.0;
const RESPONSE_MAX: f64 = 10.0;
const CANCELLATIONS_MAX: f64 = 10.0;
const DISPUTES_MAX: f64 = 10.0;
const EXPERIENCE_MAX: f64 = 5.0;

/// The mean every user starts from, and how many reviews it weighs.
pub const PRIOR_MEAN: f64 = 3.5;
pub const PRIOR_WEIGHT: f64 = 5.0;
/// Full points for answering within this, none from [`SLOW_SECS`].
const FAST_SECS: f64 = 3600.0;
const SLOW_SECS: f64 = 24.0 * 3600.0;
/// Clean bookings assumed in every rate, so a first cancellation is not 100 %.
const RATE_PRIOR: f64 = 2.0;
const CANCELLATION_RATE_ZERO: f64 = 0.25;
const DISPUTE_RATE_ZERO: f64 = 0.20;
const EXPERIENCE_FULL: u32 = 10;

/// The score of `signals`.
pub fn score(signals: &Signals) -> TrustScore {
    let bookings = signals.bookings;
    let identity = component(
        IDENTITY_MAX,
        if signals.identity_verified { 1.0 } else { 0.0 },
        Some(f64::from(u8::from(signals.identity_verified))),
    );
    let verified_contacts = u8::from(signals.email_verified) + u8::from(signals.phone_verified);
    let contact = component(
        2.0 * CONTACT_EACH,
        f64::from(verified_contacts) / 2.0,
        Some(f64::from(verified_contacts)),
    );
    let adjusted = adjusted_rating(signals.rating_avg, signals.rating_count);
    let reviews = component(REVIEWS_MAX, (adjusted - 1.0) / 4.0, Some(round2(adjusted)));
    let response_time = match signals.response_time_secs.filter(|t| !t.is_nan()) {
        None => component(RESPONSE_MAX, 0.5, None),
        Some(secs) => {
            let secs = secs.max(0.0);
            component(
                RESPONSE_MAX,
                1.0 - (secs - FAST_SECS) / (SLOW_SECS - FAST_SECS),
                Some(secs.round()),
            )
        }
    };
    let rate = |count: u32| f64::from(count.min(bookings)) / (f64::from(bookings) + RATE_PRIOR);
    let cancellation_rate = rate(signals.cancelled);
    let cancellations = component(
        CANCELLATIONS_MAX,
        1.0 - cancellation_rate / CANCELLATION_RATE_ZERO,
        Some(round2(cancellation_rate)),
    );
    let dispute_rate = rate(signals.disputed);
    let disputes = component(
        DISPUTES_MAX,
        1.0 - dispute_rate / DISPUTE_RATE_ZERO,
        Some(round2(dispute_rate)),
    );
    let completed = signals.completed.min(bookings);
    let experience = component(
        EXPERIENCE_MAX,
        f64::from(completed.min(EXPERIENCE_FULL)) / f64::from(EXPERIENCE_FULL),
        Some(f64::from(completed)),
    );
    let components = RawComponents {
        identity,
        contact,
        reviews,
        response_time,
        cancellations,
        disputes,
        experience,
    };
    let total: f64 = components.all().iter().map(|c| c.raw).sum();
    TrustScore {
        score: total.round().clamp(0.0, 100.0) as u8,
        components: components.rounded(),
    }
}

/// The mean rating pulled towards [`PRIOR_MEAN`] by [`PRIOR_WEIGHT`]
/// imaginary reviews (a Bayesian average), within 1..=5.
pub fn adjusted_rating(avg: Option<f64>, count: u32) -> f64 {
    let (avg, count) = match avg.filter(|a| a.is_finite()) {
        Some(avg) if count > 0 => (avg.clamp(1.0, 5.0), f64::from(count)),
        _ => (PRIOR_MEAN, 0.0),
    };
    (PRIOR_WEIGHT * PRIOR_MEAN + avg * count) / (PRIOR_WEIGHT + count)
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A component being built: its exact points (summed before rounding).
#[derive(Clone, Copy)]
struct Raw {
    raw: f64,
    max: f64,
    value: Option<f64>,
}

/// `share` (clamped to 0..=1) of `max` points.
fn component(max: f64, share: f64, value: Option<f64>) -> Raw {
    let share = if share.is_nan() {
        0.0
    } else {
        share.clamp(0.0, 1.0)
    };
    Raw {
        raw: max * share,
        max,
        value,
    }
}

struct RawComponents {
    identity: Raw,
    contact: Raw,
    reviews: Raw,
    response_time: Raw,
    cancellations: Raw,
    disputes: Raw,
    experience: Raw,
}

impl RawComponents {
    fn all(&self) -> [Raw; 7] {
        [
            self.identity,
            self.contact,
            self.reviews,
            self.response_time,
            self.cancellations,
            self.disputes,
            self.experience,
        ]
    }

    fn rounded(&self) -> Components {
        let done = |c: Raw| Component {
            points: round2(c.raw),
            max: c.max,
            value: c.value,
        };
        Components {
            identity: done(self.identity),
            contact: done(self.contact),
            reviews: done(self.reviews),
            response_time: done(self.response_time),
            cancellations: done(self.cancellations),
            disputes: done(self.disputes),
            experience: done(self.experience),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn regular() -> Signals {
        Signals {
            identity_verified: true,
            email_verified: true,
            phone_verified: true,
            response_time_secs: Some(1800.0),
            bookings: 20,
            completed: 20,
            cancelled: 0,
            disputed: 0,
            rating_avg: Some(5.0),
            rating_count: 40,
        }
    }

    #[test]
    fn a_newcomer_gets_the_neutral_halves() {
        let newcomer = score(&Signals::default());
        // 18.75 (prior mean 3.5) + 5 (response unknown) + 10 + 10 (no bookings, no bad rates).
        assert_eq!(newcomer.score, 44);
        assert_eq!(newcomer.components.identity.points, 0.0);
        assert_eq!(newcomer.components.reviews.points, 18.75);
        assert_eq!(newcomer.components.reviews.value, Some(3.5));
        assert_eq!(newcomer.components.response_time.points, 5.0);
        assert_eq!(newcomer.components.response_time.value, None);
        assert_eq!(newcomer.components.experience.points, 0.0);
    }

    #[test]
    fn a_verified_well_reviewed_regular_is_near_the_top() {
        let top = score(&regular());
        // 5 imaginary 3.5s still weigh on 40 fives: 4.83 → 28.75 points.
        assert_eq!(top.score, 99);
        assert_eq!(top.components.reviews.value, Some(4.83));
        let max: f64 = top.components.all().iter().map(|c| c.max).sum();
        assert_eq!(max, 100.0);
    }

    #[test]
    fn one_review_does_not_dominate() {
        let one_bad = adjusted_rating(Some(1.0), 1);
        let one_good = adjusted_rating(Some(5.0), 1);
        assert!((3.0..3.5).contains(&one_bad), "{one_bad}");
        assert!((3.5..4.0).contains(&one_good), "{one_good}");
        assert_eq!(adjusted_rating(None, 0), PRIOR_MEAN);
        assert_eq!(adjusted_rating(Some(f64::NAN), 3), PRIOR_MEAN);
    }

    #[test]
    fn bad_habits_cost_their_component() {
        let mut s = regular();
        s.cancelled = 10;
        s.disputed = 10;
        s.response_time_secs = Some(2.0 * 86400.0);
        let t = score(&s);
        assert_eq!(t.components.cancellations.points, 0.0);
        assert_eq!(t.components.disputes.points, 0.0);
        assert_eq!(t.components.response_time.points, 0.0);
        assert_eq!(t.score, 99 - 30);
        // One cancellation out of one booking is 1/3 with the prior, not 100 %.
        let first = score(&Signals {
            bookings: 1,
            cancelled: 1,
            ..Signals::default()
        });
        assert_eq!(first.components.cancellations.value, Some(0.33));
    }

    #[test]
    fn counts_beyond_the_bookings_are_capped() {
        let odd = Signals {
            bookings: 1,
            completed: 50,
            cancelled: 50,
            ..Signals::default()
        };
        let t = score(&odd);
        assert_eq!(t.components.experience.value, Some(1.0));
        assert_eq!(t.components.cancellations.value, Some(0.33));
    }

    fn signals() -> impl Strategy<Value = Signals> {
        (
            any::<[bool; 3]>(),
            prop::option::of(0.0f64..400_000.0),
            0u32..200,
            (0u32..200, 0u32..200, 0u32..200),
            prop::option::of(1.0f64..=5.0),
            0u32..500,
        )
            .prop_map(
                |(
                    [identity, email, phone],
                    response,
                    bookings,
                    (completed, cancelled, disputed),
                    avg,
                    count,
                )| {
                    Signals {
                        identity_verified: identity,
                        email_verified: email,
                        phone_verified: phone,
                        response_time_secs: response,
                        bookings,
                        completed: completed.min(bookings),
                        cancelled: cancelled.min(bookings),
                        disputed: disputed.min(bookings),
                        rating_avg: avg,
                        rating_count: if avg.is_some() { count.max(1) } else { 0 },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn the_score_is_bounded_and_its_parts_add_up(s in signals()) {
            let t = score(&s);
            prop_assert!(t.score <= 100);
            let mut sum = 0.0;
            for c in t.components.all() {
                prop_assert!((0.0..=c.max).contains(&c.points), "{:?}", c);
                sum += c.points;
            }
            prop_assert!((sum - f64::from(t.score)).abs() <= 0.5 + 0.05, "{} vs {}", sum, t.score);
        }

        #[test]
        fn any_input_even_nonsense_stays_in_bounds(
            response in prop::option::of(any::<f64>()),
            avg in prop::option::of(any::<f64>()),
            counts in any::<[u32; 5]>(),
        ) {
            let s = Signals {
                response_time_secs: response,
                rating_avg: avg,
                bookings: counts[0],
                completed: counts[1],
                cancelled: counts[2],
                disputed: counts[3],
                rating_count: counts[4],
                ..Signals::default()
            };
            prop_assert!(score(&s).score <= 100);
        }

        #[test]
        fn verification_never_lowers_the_score(s in signals(), which in 0usize..3) {
            let mut better = s.clone();
            match which {
                0 => better.identity_verified = true,
                1 => better.email_verified = true,
                _ => better.phone_verified = true,
            }
            prop_assert!(score(&better).score >= score(&s).score);
        }

        #[test]
        fn a_better_mean_rating_never_lowers_the_score(s in signals(), a in 1.0f64..=5.0, b in 1.0f64..=5.0, count in 1u32..500) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            let with = |avg| Signals { rating_avg: Some(avg), rating_count: count, ..s.clone() };
            prop_assert!(score(&with(high)).score >= score(&with(low)).score);
        }

        #[test]
        fn more_reviews_above_the_prior_never_lower_the_score(s in signals(), avg in PRIOR_MEAN..=5.0, n in 1u32..500, more in 0u32..500) {
            let with = |count| Signals { rating_avg: Some(avg), rating_count: count, ..s.clone() };
            prop_assert!(score(&with(n + more)).score >= score(&with(n)).score);
        }

        #[test]
        fn a_faster_answer_never_lowers_the_score(s in signals(), a in 0.0f64..400_000.0, b in 0.0f64..400_000.0) {
            let (fast, slow) = if a <= b { (a, b) } else { (b, a) };
            let with = |t| Signals { response_time_secs: Some(t), ..s.clone() };
            prop_assert!(score(&with(fast)).score >= score(&with(slow)).score);
        }

        #[test]
        fn fewer_cancellations_or_disputes_never_lower_the_score(s in signals(), fewer in 0u32..200) {
            let mut cancels = s.clone();
            cancels.cancelled = fewer.min(s.cancelled);
            prop_assert!(score(&cancels).score >= score(&s).score);
            let mut disputes = s.clone();
            disputes.disputed = fewer.min(s.disputed);
            prop_assert!(score(&disputes).score >= score(&s).score);
        }

        #[test]
        fn more_clean_bookings_and_completions_never_lower_the_score(s in signals(), more in 0u32..200) {
            // Another completed booking without trouble: the rates fall, experience grows.
            let more_bookings = Signals {
                bookings: s.bookings + more,
                completed: s.completed + more,
                ..s.clone()
            };
            prop_assert!(score(&more_bookings).score >= score(&s).score);
        }
    }
}
