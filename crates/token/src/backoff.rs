//! Exponential backoff with jitter: the pause between the IAM fetch's attempts and the wait
//! after the manager's failed refreshes, computed in one place.

use rand::Rng;
use tokio::time::Duration;

/// `base × 2ⁿ⁻¹` after the n-th failure in a row, capped at `cap`, jittered over its later
/// half.
///
/// The jitter keeps a fleet that failed together from retrying in lockstep; keeping it to
/// the later half keeps the wait growing with each failure, so an outage is not hammered by
/// the unlucky draws that full jitter (`0..=ceiling`) allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exponential {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
}

impl Exponential {
    pub(crate) const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The longest wait after the `failures`-th failure in a row: `base × 2ⁿ⁻¹`, capped.
    /// (0 counts as 1.) The doubling stops at 2¹⁶ so the shift cannot overflow; the caps in
    /// use are reached long before.
    pub(crate) fn ceiling(self, failures: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.cap)
    }

    /// The wait after the `failures`-th failure in a row: the [`ceiling`](Self::ceiling)
    /// times a random factor in `0.5..=1.0`.
    pub(crate) fn delay(self, failures: u32) -> Duration {
        self.ceiling(failures)
            .mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delay_is_within_the_later_half_of_a_capped_doubling_ceiling(
            base_ms in 0u64..10_000,
            cap_ms in 0u64..3_600_000,
            failures in any::<u32>(),
        ) {
            let backoff = Exponential::new(
                Duration::from_millis(base_ms),
                Duration::from_millis(cap_ms),
            );
            let ceiling = backoff.ceiling(failures);
            let doublings = failures.saturating_sub(1).min(16);
            let uncapped = Duration::from_millis(base_ms << doublings);
            prop_assert_eq!(ceiling, uncapped.min(backoff.cap));
            prop_assert!(ceiling <= backoff.ceiling(failures.saturating_add(1)));
            let delay = backoff.delay(failures);
            prop_assert!(delay >= ceiling / 2, "{:?} under half of {:?}", delay, ceiling);
            prop_assert!(delay <= ceiling, "{:?} over {:?}", delay, ceiling);
        }
    }

    #[test]
    fn the_first_failure_waits_the_base_and_zero_counts_as_one() {
        let backoff = Exponential::new(Duration::from_millis(200), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(0), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(1), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(400));
        assert_eq!(backoff.ceiling(4), Duration::from_millis(1600));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(2));
    }
}
