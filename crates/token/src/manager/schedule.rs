//! When a token is refreshed in the background, when callers must wait, when it expires.

use rand::Rng;
use tokio::time::{Duration, Instant};

use crate::AccessToken;

/// The two windows before expiry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub(crate) buffer: Duration,
    pub(crate) ahead: Duration,
}

/// A cached token and the points of its life, all on the monotonic clock.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) token: AccessToken,
    /// From here on, the first caller starts a background refresh.
    pub(crate) refresh_at: Instant,
    /// From here on, the token is not handed out while IAM answers: callers wait.
    pub(crate) usable_until: Instant,
}

impl Schedule {
    /// Plans a token's life. `lifetime` is positive (the parser guarantees it).
    ///
    /// - A token living no longer than the buffer is usable for half its life,
    ///   so an odd `expires_in` never causes a refresh loop.
    /// - The background window is `ahead - buffer` long, but never more than half of
    ///   the usable life; its start is jittered over the later half of the window so
    ///   that a fleet of clients does not refresh in lockstep.
    pub(crate) fn plan(&self, token: AccessToken, lifetime: Duration) -> Cached {
        let (buffer, window) = self.windows(lifetime);
        let usable_until = token.expires_at() - buffer;
        let lead = window.mul_f64(rand::rng().random_range(0.5..=1.0));
        Cached {
            refresh_at: usable_until - lead,
            usable_until,
            token,
        }
    }

    /// The buffer and the background window for a token of this lifetime.
    fn windows(&self, lifetime: Duration) -> (Duration, Duration) {
        let buffer = if lifetime > self.buffer {
            self.buffer
        } else {
            lifetime / 2
        };
        let usable_life = lifetime - buffer;
        let window = self.ahead.saturating_sub(self.buffer).min(usable_life / 2);
        (buffer, window)
    }

    /// The earliest a token of this lifetime may be refreshed, as time before its expiry:
    /// one with more life left than this is not due for a refresh under any jitter.
    #[cfg(any(feature = "shared-cache", test))]
    pub(crate) fn refresh_lead(&self, lifetime: Duration) -> Duration {
        let (buffer, window) = self.windows(lifetime);
        buffer + window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::SecretString;

    fn token(lifetime: Duration) -> AccessToken {
        let now = Instant::now();
        AccessToken::new(SecretString::from("t"), "k".into(), now, now + lifetime).unwrap()
    }

    proptest! {
        #[test]
        fn windows_are_ordered(
            life_ms in 1u64..100_000_000,
            buffer_ms in 0u64..1_000_000,
            extra_ms in 0u64..10_000_000,
        ) {
            let schedule = Schedule {
                buffer: Duration::from_millis(buffer_ms),
                ahead: Duration::from_millis(buffer_ms + extra_ms),
            };
            let lifetime = Duration::from_millis(life_ms);
            let cached = schedule.plan(token(lifetime), lifetime);
            let fetched = cached.token.fetched_at();
            prop_assert!(fetched <= cached.refresh_at);
            prop_assert!(cached.refresh_at <= cached.usable_until);
            prop_assert!(cached.usable_until <= cached.token.expires_at());
            // Never a refresh loop: the usable life is at least half the lifetime or
            // the lifetime minus the buffer.
            let usable = cached.usable_until - fetched;
            prop_assert!(usable >= lifetime / 2 || usable == lifetime - schedule.buffer);
            // The background refresh never starts before half the usable life.
            prop_assert!(cached.refresh_at - fetched >= usable / 2);
        }
    }

    #[test]
    fn refresh_lead_is_the_earliest_refresh_point() {
        let schedule = Schedule {
            buffer: Duration::from_secs(30),
            ahead: Duration::from_secs(300),
        };
        let hour = Duration::from_secs(3600);
        assert_eq!(schedule.refresh_lead(hour), Duration::from_secs(300));
        // 40 s tokens: usable for 10 s, the window is half of that.
        assert_eq!(
            schedule.refresh_lead(Duration::from_secs(40)),
            Duration::from_secs(35)
        );
        for _ in 0..100 {
            let cached = schedule.plan(token(hour), hour);
            assert!(cached.token.expires_at() - cached.refresh_at <= schedule.refresh_lead(hour));
        }
    }

    #[test]
    fn default_windows_for_an_hour_token() {
        let schedule = Schedule {
            buffer: Duration::from_secs(30),
            ahead: Duration::from_secs(300),
        };
        let lifetime = Duration::from_secs(3600);
        let cached = schedule.plan(token(lifetime), lifetime);
        let fetched = cached.token.fetched_at();
        assert_eq!(cached.usable_until - fetched, Duration::from_secs(3570));
        let lead = cached.usable_until - cached.refresh_at;
        assert!(lead >= Duration::from_secs(135) && lead <= Duration::from_secs(270));
    }
}
