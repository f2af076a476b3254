//! The wait after failed refreshes, readable without a lock.
//!
//! Every refresh, whatever starts it (a first call, an expired or invalidated token, the
//! refresh-ahead window, the monitor), waits until the backoff of the last failure has run
//! out; meanwhile callers without a usable token get that failure's error at once. The end
//! of the backoff is written under the refresh lock but read with one atomic load, so the
//! hot path ([`TokenManager::cached`](super::TokenManager::cached)) never takes the lock
//! during an IAM outage.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::{Duration, Instant};

use crate::backoff::Exponential;

/// The wait before another refresh after a failed one: 1 second, doubling with each failure
/// in a row, jittered over its later half (so 0.5 to 1 s after the first failure).
pub const FAILED_REFRESH_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between failed refreshes (before jitter): 30 seconds. Once IAM is back,
/// a manager that failed many times in a row recovers within this.
pub const FAILED_REFRESH_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The longest IAM `Retry-After` the backoff honours (5 minutes): IAM asking for more is
/// waited this long, so that a manager still recovers in bounded time.
pub const MAX_REFRESH_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// When the next refresh may start, as nanoseconds after `origin` (0: no backoff).
#[derive(Debug)]
pub(super) struct Backoff {
    origin: Instant,
    until: AtomicU64,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Self {
            origin: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    /// Whether a refresh must not start at `now`.
    pub(super) fn is_running(&self, now: Instant) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        until != 0 && self.nanos(now) < until
    }

    /// The end of the current (or last) backoff, if a failure set one.
    pub(super) fn until(&self) -> Option<Instant> {
        match self.until.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.origin + Duration::from_nanos(nanos)),
        }
    }

    /// Starts the backoff after the `failures`-th failure in a row, at `now`; it lasts at
    /// least `retry_after` (IAM's own `Retry-After`, up to [`MAX_REFRESH_RETRY_AFTER`]).
    pub(super) fn start(&self, failures: u32, now: Instant, retry_after: Option<Duration>) {
        let floor = retry_after.unwrap_or_default().min(MAX_REFRESH_RETRY_AFTER);
        let until = now + delay(failures).max(floor);
        self.until
            .store(self.nanos(until).max(1), Ordering::Relaxed);
    }

    /// A refresh succeeded (or the key changed): the next may start at once.
    pub(super) fn clear(&self) {
        self.until.store(0, Ordering::Relaxed);
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX)
    }
}

/// The wait after the `failures`-th failure in a row: 1 s × 2ⁿ⁻¹ up to 30 s, jittered over
/// its later half so that a fleet does not retry in lockstep.
pub(super) fn delay(failures: u32) -> Duration {
    Exponential::new(FAILED_REFRESH_BACKOFF_BASE, FAILED_REFRESH_BACKOFF_CAP).delay(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_to_the_cap_with_jitter_over_its_later_half() {
        for failures in 1..=40 {
            let full =
                Duration::from_secs(1u64 << (failures - 1).min(5)).min(Duration::from_secs(30));
            for _ in 0..50 {
                let delay = delay(failures);
                assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
            }
        }
        assert!(delay(u32::MAX) <= FAILED_REFRESH_BACKOFF_CAP);
    }

    #[test]
    fn runs_until_its_end_then_clears() {
        let backoff = Backoff::new();
        let now = Instant::now();
        assert!(!backoff.is_running(now) && backoff.until().is_none());
        backoff.start(1, now, None);
        let until = backoff.until().unwrap();
        assert!(until >= now + Duration::from_millis(500) && until <= now + Duration::from_secs(1));
        assert!(backoff.is_running(now));
        assert!(!backoff.is_running(until));
        backoff.clear();
        assert!(!backoff.is_running(now) && backoff.until().is_none());
    }

    #[test]
    fn lasts_at_least_iams_retry_after_up_to_its_cap() {
        let backoff = Backoff::new();
        let now = Instant::now();
        backoff.start(1, now, Some(Duration::from_secs(60)));
        assert_eq!(backoff.until(), Some(now + Duration::from_secs(60)));
        backoff.start(1, now, Some(Duration::from_secs(86_400)));
        assert_eq!(backoff.until(), Some(now + MAX_REFRESH_RETRY_AFTER));
        // A short Retry-After does not shorten the backoff.
        backoff.start(6, now, Some(Duration::from_secs(1)));
        assert!(backoff.until().unwrap() >= now + FAILED_REFRESH_BACKOFF_CAP / 2);
    }
}
