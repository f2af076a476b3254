//! When to retry: exponential backoff with [`Jitter`].
//!
//! The maths is a pure function, [`ExponentialBackoff::delay`], that takes the random draw as
//! an argument; the policy supplies the draw from its generator (seedable for tests, see
//! [`RetryConfigBuilder::rng_seed`](crate::RetryConfigBuilder::rng_seed)).

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{ConfigError, DEFAULT_BASE_DELAY, DEFAULT_FACTOR, DEFAULT_MAX_DELAY};

/// How randomness spreads the delays, so that clients which failed together do not all come
/// back together. The names follow the AWS Architecture Blog's "Exponential Backoff And Jitter".
///
/// With `c(n) = min(max, base × factor^n)` for the `n`-th retry (from 0) and `u` uniform in
/// `[0, 1)`:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// `c(n)`: no randomness.
    None,
    /// `u × c(n)`: anywhere between nothing and the full delay. The default: it spreads load best.
    #[default]
    Full,
    /// `c(n)/2 + u × c(n)/2`: at least half the delay.
    Equal,
    /// `min(max, base + u × (3 × previous − base))`, `previous` being the last delay of this
    /// request (`base` before the first): grows from the last actual delay rather than from `n`.
    Decorrelated,
}

/// Exponential backoff: `base × factor^n`, capped at `max`, with [`Jitter`].
///
/// Defaults to 1 s × 2ⁿ capped at 30 s, full jitter.
///
/// ```
/// use std::time::Duration;
/// use evolution_retry::{ExponentialBackoff, Jitter};
///
/// let backoff = ExponentialBackoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(30), Jitter::None)?;
/// assert_eq!(backoff.ceiling(0), Duration::from_secs(1));
/// assert_eq!(backoff.ceiling(3), Duration::from_secs(8));
/// assert_eq!(backoff.ceiling(10), Duration::from_secs(30));
/// # Ok::<(), evolution_retry::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    pub(crate) base: Duration,
    pub(crate) factor: f64,
    pub(crate) max: Duration,
    pub(crate) jitter: Jitter,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        Self {
            base: DEFAULT_BASE_DELAY,
            factor: DEFAULT_FACTOR,
            max: DEFAULT_MAX_DELAY,
            jitter: Jitter::default(),
        }
    }
}

impl ExponentialBackoff {
    /// A schedule starting at `base`, multiplied by `factor` for each retry, never above `max`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidFactor`] unless `factor` is finite and at least 1;
    /// [`ConfigError::BaseAboveMax`] if `base > max`.
    pub fn new(
        base: Duration,
        factor: f64,
        max: Duration,
        jitter: Jitter,
    ) -> Result<Self, ConfigError> {
        if !(factor.is_finite() && factor >= 1.0) {
            return Err(ConfigError::InvalidFactor(factor));
        }
        if base > max {
            return Err(ConfigError::BaseAboveMax { base, max });
        }
        Ok(Self {
            base,
            factor,
            max,
            jitter,
        })
    }

    /// The first delay before jitter.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The growth factor per retry.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The cap: no delay is longer.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The jitter.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// `min(max, base × factor^retry)`: the delay before jitter for the `retry`-th retry
    /// (0 for the first).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let scale = self.factor.powi(exponent);
        match Duration::try_from_secs_f64(self.base.as_secs_f64() * scale) {
            Ok(delay) if scale.is_finite() => delay.min(self.max),
            _ => self.max,
        }
    }

    /// The delay before the `retry`-th retry (0 for the first), given the delay before the
    /// previous one (`Duration::ZERO` for the first; only [`Jitter::Decorrelated`] uses it) and
    /// a draw `unit` in `[0, 1)` (ignored by [`Jitter::None`]). Never more than [`max`](Self::max).
    ///
    /// ```
    /// use std::time::Duration;
    /// use evolution_retry::{ExponentialBackoff, Jitter};
    ///
    /// let full = ExponentialBackoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(30), Jitter::Full)?;
    /// assert_eq!(full.delay(2, Duration::ZERO, 0.5), Duration::from_secs(2)); // 0.5 × 4 s
    /// # Ok::<(), evolution_retry::ConfigError>(())
    /// ```
    pub fn delay(&self, retry: u32, previous: Duration, unit: f64) -> Duration {
        // A draw outside [0, 1) must not stretch a delay past the cap nor make it negative.
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let delay = match self.jitter {
            Jitter::None => self.ceiling(retry),
            Jitter::Full => self.ceiling(retry).mul_f64(unit),
            Jitter::Equal => {
                let ceiling = self.ceiling(retry);
                let half = ceiling / 2;
                half + (ceiling - half).mul_f64(unit)
            }
            Jitter::Decorrelated => {
                let high = previous.max(self.base).saturating_mul(3);
                let spread = high.saturating_sub(self.base).min(self.max);
                self.base.saturating_add(spread.mul_f64(unit))
            }
        };
        delay.min(self.max)
    }
}

/// The source of jitter draws, shared by every clone of one layer or middleware.
#[derive(Debug)]
pub(crate) enum JitterRng {
    /// The thread-local generator: no lock on the retry path.
    Thread,
    /// A seeded generator behind a lock, for reproducible delays. Shared rather than cloned
    /// per request, so that concurrent requests do not draw the same sequence.
    Seeded(Box<Mutex<StdRng>>),
}

impl JitterRng {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        match seed {
            Some(seed) => Self::Seeded(Box::new(Mutex::new(StdRng::seed_from_u64(seed)))),
            None => Self::Thread,
        }
    }

    /// A uniform draw in `[0, 1)`.
    pub(crate) fn unit(&self) -> f64 {
        match self {
            Self::Thread => rand::rng().random::<f64>(),
            Self::Seeded(rng) => rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .random::<f64>(),
        }
    }
}

/// The configured schedule: the built-in exponential backoff, or a `backoff` crate schedule.
#[derive(Clone)]
pub(crate) enum Schedule {
    Exponential(ExponentialBackoff),
    #[cfg(feature = "backoff")]
    External(std::sync::Arc<dyn external::DynBackoff>),
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exponential(backoff) => backoff.fmt(f),
            #[cfg(feature = "backoff")]
            Self::External(_) => f.write_str("backoff::backoff::Backoff"),
        }
    }
}

/// One request's place in the schedule. Lives in the per-request clone of the policy.
#[derive(Debug, Default)]
pub(crate) struct ScheduleState {
    /// The last backoff this request waited (for decorrelated jitter).
    previous: Duration,
    #[cfg(feature = "backoff")]
    external: Option<Box<dyn external::DynBackoff>>,
}

impl Clone for ScheduleState {
    fn clone(&self) -> Self {
        Self {
            previous: self.previous,
            #[cfg(feature = "backoff")]
            external: self.external.as_ref().map(|backoff| backoff.clone_box()),
        }
    }
}

impl Schedule {
    /// The backoff before retry number `retry` (0 for the first) of the request whose state is
    /// `state`; `None` if the schedule has no more delays (only a `backoff` crate schedule ends).
    pub(crate) fn next(
        &self,
        retry: u32,
        state: &mut ScheduleState,
        rng: &JitterRng,
    ) -> Option<Duration> {
        match self {
            Self::Exponential(backoff) => {
                let unit = match backoff.jitter {
                    Jitter::None => 0.0,
                    _ => rng.unit(),
                };
                let delay = backoff.delay(retry, state.previous, unit);
                state.previous = delay;
                Some(delay)
            }
            #[cfg(feature = "backoff")]
            Self::External(template) => state
                .external
                .get_or_insert_with(|| template.fresh())
                .next(),
        }
    }

    /// The same, for a caller that keeps no state between retries (reqwest-retry): the
    /// previous delay is taken as the un-jittered `c(retry − 1)`, and a `backoff` crate
    /// schedule is replayed from its start.
    pub(crate) fn next_stateless(&self, retry: u32, rng: &JitterRng) -> Option<Duration> {
        let mut state = ScheduleState::default();
        match self {
            Self::Exponential(backoff) => {
                if let Some(before) = retry.checked_sub(1) {
                    state.previous = backoff.ceiling(before);
                }
            }
            #[cfg(feature = "backoff")]
            Self::External(template) => {
                let mut fresh = template.fresh();
                for _ in 0..retry {
                    fresh.next()?;
                }
                state.external = Some(fresh);
            }
        }
        self.next(retry, &mut state, rng)
    }
}

#[cfg(feature = "backoff")]
pub(crate) mod external {
    //! The `backoff` crate's schedules, behind one object-safe trait.

    use std::time::Duration;

    /// A `backoff::backoff::Backoff` that can be cloned behind a `Box`.
    pub(crate) trait DynBackoff: Send + Sync {
        fn next(&mut self) -> Option<Duration>;
        /// A copy of this schedule, reset to its start: one per request.
        fn fresh(&self) -> Box<dyn DynBackoff>;
        /// A copy in its current position.
        fn clone_box(&self) -> Box<dyn DynBackoff>;
    }

    impl<B> DynBackoff for B
    where
        B: backoff::backoff::Backoff + Clone + Send + Sync + 'static,
    {
        fn next(&mut self) -> Option<Duration> {
            self.next_backoff()
        }

        fn fresh(&self) -> Box<dyn DynBackoff> {
            let mut fresh = self.clone();
            fresh.reset();
            Box::new(fresh)
        }

        fn clone_box(&self) -> Box<dyn DynBackoff> {
            Box::new(self.clone())
        }
    }

    impl std::fmt::Debug for dyn DynBackoff {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("backoff::backoff::Backoff")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(jitter: Jitter) -> ExponentialBackoff {
        ExponentialBackoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(30), jitter)
            .unwrap()
    }

    #[test]
    fn ceiling_grows_then_caps() {
        let b = backoff(Jitter::None);
        let got: Vec<u64> = (0..7).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn each_jitter_formula() {
        let prev = Duration::from_secs(2);
        assert_eq!(
            backoff(Jitter::None).delay(2, prev, 0.25),
            Duration::from_secs(4)
        );
        assert_eq!(
            backoff(Jitter::Full).delay(2, prev, 0.25),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff(Jitter::Equal).delay(2, prev, 0.25),
            Duration::from_millis(2500)
        );
        // base + u × (3 × 2 s − base) = 1 + 0.25 × 5
        assert_eq!(
            backoff(Jitter::Decorrelated).delay(2, prev, 0.25),
            Duration::from_millis(2250)
        );
    }

    #[test]
    fn stateless_decorrelated_uses_the_previous_ceiling() {
        let b = backoff(Jitter::Decorrelated);
        let schedule = Schedule::Exponential(b);
        let rng = JitterRng::new(Some(7));
        let expected_unit = JitterRng::new(Some(7)).unit();
        assert_eq!(
            schedule.next_stateless(3, &rng),
            Some(b.delay(3, b.ceiling(2), expected_unit))
        );
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let s = Duration::from_secs(1);
        assert!(ExponentialBackoff::new(s, 0.5, s, Jitter::Full).is_err());
        assert!(ExponentialBackoff::new(s, f64::NAN, s, Jitter::Full).is_err());
        assert!(ExponentialBackoff::new(s * 2, 2.0, s, Jitter::Full).is_err());
    }
}
