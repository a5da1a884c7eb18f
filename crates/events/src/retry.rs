//! When a failed event is tried again: exponential back-off with jitter, so
//! a dependency that went down is not hammered and retries of many events
//! spread out instead of arriving together.

use std::time::Duration;

/// Back-off: `base` after the first failure, doubling, never above `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `failures + 1`, for a random `jitter` in
    /// [0, 1): "equal jitter", half fixed and half random, so the delay is
    /// never less than half the exponential step.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(32);
        let step = self
            .base
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        step.mul_f64(0.5 + 0.5 * jitter).min(self.max)
    }

    /// [`Backoff::delay`] with a random jitter.
    pub fn next(&self, failures: u32) -> Duration {
        self.delay(failures, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(3600),
        }
    }

    #[test]
    fn delays_double_from_the_base() {
        let b = backoff();
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(500));
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(1000));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(2000));
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(250));
        assert_eq!(b.delay(40, 1.0), Duration::from_secs(3600));
    }

    proptest! {
        #[test]
        fn a_delay_is_within_half_and_whole_of_its_capped_step(failures in 0u32..100, jitter in 0.0f64..1.0) {
            let b = backoff();
            let d = b.delay(failures, jitter);
            let step = b.base.saturating_mul(1u32 << failures.saturating_sub(1).min(31)).min(b.max);
            prop_assert!(d <= b.max);
            prop_assert!(d >= step / 2);
            prop_assert!(d <= step);
        }

        #[test]
        fn later_attempts_never_wait_less_at_the_same_jitter(failures in 1u32..60, jitter in 0.0f64..1.0) {
            let b = backoff();
            prop_assert!(b.delay(failures + 1, jitter) >= b.delay(failures, jitter));
        }
    }
}
