//! [`RetryConfig`]: one description of the retry behaviour, for the tower layer and the
//! reqwest-middleware stack alike.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::TpsBudget;

use crate::backoff::{ExponentialBackoff, Jitter, Schedule};
use crate::observe::RetryObserver;
use crate::retry_after::{Clock, LongRetryAfter, SystemClock};

/// Attempts per request, the first included: 3, as the reference client.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The first backoff before jitter: 1 second.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(1);
/// The backoff growth per retry: ×2.
pub const DEFAULT_FACTOR: f64 = 2.0;
/// The longest backoff: 30 seconds.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured: 60 seconds (a longer one is cut to this).
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Whether a request whose attempt timed out is sent again: yes, as the OpenAI SDKs do.
///
/// The server may be generating the answer when the attempt is abandoned: a resent chat
/// completion may be generated, and billed, once per attempt.
pub const DEFAULT_RETRY_ON_TIMEOUT: bool = true;
/// Whether a request whose connection failed after it may have reached the server is sent
/// again: yes, as the OpenAI SDKs do (they retry every connection error). Same cost as
/// [`DEFAULT_RETRY_ON_TIMEOUT`].
pub const DEFAULT_RETRY_AMBIGUOUS: bool = true;
/// What to do when the server asks for a longer wait than `max_retry_after`: fail at once,
/// with the server's wait in the answer ([`LongRetryAfter::Fail`]).
pub const DEFAULT_LONG_RETRY_AFTER: LongRetryAfter = LongRetryAfter::Fail;
/// How long a request counts towards the retry budget: 10 seconds.
pub const DEFAULT_BUDGET_TTL: Duration = Duration::from_secs(10);
/// Retries per second always allowed, whatever the traffic: 10.
pub const DEFAULT_BUDGET_MIN_PER_SEC: u32 = 10;
/// Retries allowed per request, on top of the minimum: 0.2, that is 20% extra load.
pub const DEFAULT_BUDGET_RETRY_RATIO: f32 = 0.2;

/// A configuration that cannot work, refused by [`RetryConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_attempts` was 0; 1 means "no retries".
    #[error("max_attempts must be at least 1 (1 means no retries)")]
    ZeroAttempts,
    /// The backoff factor is below 1, infinite or not a number.
    #[error("the backoff factor must be a finite number of at least 1, got {0}")]
    InvalidFactor(f64),
    /// The base delay is above the maximum delay.
    #[error("the base delay ({base:?}) must not exceed the maximum delay ({max:?})")]
    BaseAboveMax {
        /// The base delay given.
        base: Duration,
        /// The maximum delay given.
        max: Duration,
    },
    /// `max_retry_after` was zero with [`LongRetryAfter::Fail`]: every answer asking for a
    /// wait would fail at once.
    #[error(
        "max_retry_after is zero with LongRetryAfter::Fail: every answer with a Retry-After would fail at once; to ignore Retry-After, use LongRetryAfter::RetryEarly"
    )]
    ZeroMaxRetryAfter,
    /// The deadline was zero: no retry could ever fit.
    #[error("the deadline must be longer than zero")]
    ZeroDeadline,
    /// The budget window is outside 1..=60 seconds (`TpsBudget`'s range).
    #[error("the retry budget ttl must be between 1 and 60 seconds, got {0:?}")]
    BudgetTtl(Duration),
    /// The budget's minimum rate is too large.
    #[error("the retry budget's minimum retries per second must be below 2^31 - 1, got {0}")]
    BudgetMinPerSec(u32),
    /// The budget ratio is outside 0..=1000 or not a number.
    #[error("the retry budget ratio must be between 0 and 1000, got {0}")]
    BudgetRatio(f32),
}

/// How requests are retried: which attempts, how many, how long apart, within what budget.
///
/// Built by [`RetryConfig::builder`] (validated) or [`RetryConfig::default`]. The same value
/// drives [`RetryLayer`](crate::RetryLayer) (tower) and
/// [`into_middleware`](RetryConfig::into_middleware) (reqwest-middleware). Cloning is cheap.
///
/// ```
/// use std::time::Duration;
/// use evolution_retry::{Jitter, RetryConfig};
///
/// let config = RetryConfig::builder()
///     .max_attempts(5)
///     .base_delay(Duration::from_millis(200))
///     .jitter(Jitter::Equal)
///     .deadline(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(config.max_attempts(), 5);
/// # Ok::<(), evolution_retry::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryConfig {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: ExponentialBackoff,
    pub(crate) schedule: Schedule,
    pub(crate) max_retry_after: Duration,
    pub(crate) long_retry_after: LongRetryAfter,
    pub(crate) retry_on_timeout: bool,
    pub(crate) retry_ambiguous: bool,
    pub(crate) deadline: Option<Duration>,
    pub(crate) budget_ttl: Duration,
    pub(crate) budget_min_per_sec: u32,
    pub(crate) budget_retry_ratio: f32,
    pub(crate) rng_seed: Option<u64>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) observers: Vec<Arc<dyn RetryObserver>>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: ExponentialBackoff::default(),
            schedule: Schedule::Exponential(ExponentialBackoff::default()),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            long_retry_after: DEFAULT_LONG_RETRY_AFTER,
            retry_on_timeout: DEFAULT_RETRY_ON_TIMEOUT,
            retry_ambiguous: DEFAULT_RETRY_AMBIGUOUS,
            deadline: None,
            budget_ttl: DEFAULT_BUDGET_TTL,
            budget_min_per_sec: DEFAULT_BUDGET_MIN_PER_SEC,
            budget_retry_ratio: DEFAULT_BUDGET_RETRY_RATIO,
            rng_seed: None,
            clock: Arc::new(SystemClock),
            observers: Vec::new(),
        }
    }
}

impl fmt::Debug for RetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryConfig")
            .field("max_attempts", &self.max_attempts)
            .field("schedule", &self.schedule)
            .field("max_retry_after", &self.max_retry_after)
            .field("long_retry_after", &self.long_retry_after)
            .field("retry_on_timeout", &self.retry_on_timeout)
            .field("retry_ambiguous", &self.retry_ambiguous)
            .field("deadline", &self.deadline)
            .field("budget_ttl", &self.budget_ttl)
            .field("budget_min_per_sec", &self.budget_min_per_sec)
            .field("budget_retry_ratio", &self.budget_retry_ratio)
            .field("rng_seed", &self.rng_seed)
            .field("observers", &self.observers.len())
            .finish_non_exhaustive()
    }
}

impl RetryConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder {
            config: Self::default(),
        }
    }

    /// A builder starting from this configuration, to change a part of it.
    pub fn to_builder(&self) -> RetryConfigBuilder {
        RetryConfigBuilder {
            config: self.clone(),
        }
    }

    /// This configuration with one more observer (the client adds its metrics observer to
    /// a configuration it was given). Observers accumulate.
    ///
    /// Unlike a round trip through [`to_builder`](Self::to_builder), this cannot fail: an
    /// observer changes no setting that [`build`](RetryConfigBuilder::build) checks, so there
    /// is nothing to check again, and no error on which the observer could be dropped.
    pub fn with_observer(mut self, observer: impl RetryObserver) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Attempts per request, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The exponential backoff parameters (unused when a `backoff` crate schedule was set).
    pub fn backoff(&self) -> ExponentialBackoff {
        self.backoff
    }

    /// The longest `Retry-After` honoured.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// What happens when the server asks for a longer wait than
    /// [`max_retry_after`](Self::max_retry_after).
    pub fn long_retry_after(&self) -> LongRetryAfter {
        self.long_retry_after
    }

    /// Whether a request whose attempt timed out is sent again.
    pub fn retry_on_timeout(&self) -> bool {
        self.retry_on_timeout
    }

    /// Whether a request whose connection failed after it may have reached the server is sent
    /// again.
    pub fn retry_ambiguous(&self) -> bool {
        self.retry_ambiguous
    }

    /// The overall deadline measured from the first attempt, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The seed of the jitter generator, if one was set.
    pub fn rng_seed(&self) -> Option<u64> {
        self.rng_seed
    }

    /// A new retry budget with this configuration's parameters.
    ///
    /// Each [`RetryLayer`](crate::RetryLayer) or middleware makes one at construction and
    /// shares it among its clones; call this to make one to share more widely.
    pub fn new_budget(&self) -> TpsBudget {
        TpsBudget::new(
            self.budget_ttl,
            self.budget_min_per_sec,
            self.budget_retry_ratio,
        )
    }

    /// The budget bound, in retries, for `requests` first attempts made within one budget
    /// window (the ttl) and nothing else spent from it:
    /// `min_per_sec × ttl + requests × ratio`, as `TpsBudget` counts it.
    ///
    /// With the defaults, 100 requests against a backend that fails them all get at most
    /// `10 × 10 + 100 × 0.2 = 120` retries: 220 attempts, where 3 attempts each would be 300.
    ///
    /// ```
    /// use evolution_retry::RetryConfig;
    ///
    /// assert_eq!(RetryConfig::default().budget_retries(100), 120);
    /// ```
    pub fn budget_retries(&self, requests: u64) -> u64 {
        // Mirrors TpsBudget::new's integer accounting: deposits and withdrawals in whole units.
        let ratio = f64::from(self.budget_retry_ratio);
        let (deposit, withdraw): (u64, u64) = if ratio == 0.0 {
            (0, 1)
        } else if ratio <= 1.0 {
            (1, (1.0 / self.budget_retry_ratio) as u64)
        } else {
            (1000, (1000.0 / self.budget_retry_ratio) as u64)
        };
        let withdraw = withdraw.max(1);
        let reserve = u64::from(self.budget_min_per_sec) * self.budget_ttl.as_secs() * withdraw;
        (reserve + requests * deposit) / withdraw
    }
}

/// Builds a [`RetryConfig`]; [`build`](Self::build) validates it.
#[derive(Debug, Clone)]
pub struct RetryConfigBuilder {
    config: RetryConfig,
}

impl RetryConfigBuilder {
    /// Attempts per request, the first included; 1 disables retries. Defaults to 3.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.config.max_attempts = attempts;
        self
    }

    /// The first backoff before jitter. Defaults to 1 second.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.config.backoff.base = delay;
        self
    }

    /// The backoff growth per retry. Defaults to 2.
    pub fn factor(mut self, factor: f64) -> Self {
        self.config.backoff.factor = factor;
        self
    }

    /// The longest backoff. Defaults to 30 seconds.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.config.backoff.max = delay;
        self
    }

    /// The jitter. Defaults to [`Jitter::Full`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.config.backoff.jitter = jitter;
        self
    }

    /// Base delay, factor, maximum and jitter at once.
    pub fn exponential(mut self, backoff: ExponentialBackoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Uses a [`backoff`](https://docs.rs/backoff) crate schedule for the delays instead of the
    /// built-in exponential backoff (whose settings are then ignored). Each request gets a
    /// clone, [`reset`](backoff::backoff::Backoff::reset) at its first retry; when the schedule
    /// answers `None`, the request is not retried any more. `Retry-After`, the attempt limit,
    /// the deadline and the budget apply as usual.
    ///
    /// Note that `backoff::ExponentialBackoff`'s own `max_elapsed_time` is measured on the real
    /// clock, not tokio's: prefer [`deadline`](Self::deadline).
    #[cfg(feature = "backoff")]
    pub fn backoff<B>(mut self, schedule: B) -> Self
    where
        B: backoff::backoff::Backoff + Clone + Send + Sync + 'static,
    {
        self.config.schedule = Schedule::External(Arc::new(schedule));
        self
    }

    /// The longest `Retry-After` (or `retry-after-ms`) the policy waits for. The wait is the
    /// longer of the backoff and the server's; a server asking for longer than this is
    /// [`long_retry_after`](Self::long_retry_after)'s business. Defaults to 60 seconds.
    pub fn max_retry_after(mut self, limit: Duration) -> Self {
        self.config.max_retry_after = limit;
        self
    }

    /// What to do when the server asks for a longer wait than
    /// [`max_retry_after`](Self::max_retry_after): [`LongRetryAfter::Fail`] hands the answer
    /// back at once, marked with a [`RetryAfterTooLong`](crate::RetryAfterTooLong) extension;
    /// [`LongRetryAfter::RetryEarly`] waits `max_retry_after` and retries anyway.
    /// Defaults to [`LongRetryAfter::Fail`].
    pub fn long_retry_after(mut self, long: LongRetryAfter) -> Self {
        self.config.long_retry_after = long;
        self
    }

    /// Whether a request whose attempt timed out (the per-attempt timeout, or the HTTP
    /// client's own) is sent again.
    ///
    /// The server may still be working on the abandoned attempt: a resent chat completion may
    /// be generated, and billed, once per attempt. Turn it off for long, costly completions,
    /// or raise the per-attempt timeout above their duration. A connect timeout is a
    /// connection error (nothing was sent) and is retried either way. Defaults to `true`, as
    /// the OpenAI SDKs (`max_retries = 2`, timeouts included).
    pub fn retry_on_timeout(mut self, retry: bool) -> Self {
        self.config.retry_on_timeout = retry;
        self
    }

    /// Whether a request whose connection failed after it may have reached the server is sent
    /// again ([`RetryReason::Network`](crate::RetryReason::Network): the connection was reset
    /// or closed after the request was written, or before it was written in full, with no
    /// answer). Failures to connect (refused, DNS, TLS handshake) are retried either way:
    /// nothing was sent. Timeouts have their own switch,
    /// [`retry_on_timeout`](Self::retry_on_timeout).
    ///
    /// As with timeouts, a resent chat completion may be generated and billed twice.
    /// Defaults to `true`, as the OpenAI SDKs (they retry every connection error).
    pub fn retry_ambiguous(mut self, retry: bool) -> Self {
        self.config.retry_ambiguous = retry;
        self
    }

    /// The overall deadline, measured from the start of the first attempt: a retry whose wait
    /// would not end before it is not made, and the caller gets the last answer at once
    /// instead of after a sleep that could only end in a timeout. Set it to the stack's
    /// overall timeout. Defaults to none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// Removes the deadline.
    pub fn no_deadline(mut self) -> Self {
        self.config.deadline = None;
        self
    }

    /// How long a request counts towards the retry budget, 1 to 60 seconds.
    /// Defaults to 10 seconds.
    pub fn budget_ttl(mut self, ttl: Duration) -> Self {
        self.config.budget_ttl = ttl;
        self
    }

    /// Retries per second allowed whatever the traffic, so that a client with few requests can
    /// still retry. Defaults to 10.
    pub fn budget_min_per_sec(mut self, retries: u32) -> Self {
        self.config.budget_min_per_sec = retries;
        self
    }

    /// Retries allowed per request sent, on top of the minimum: 0.2 lets retries add at most
    /// 20% to the load. 0 to 1000. Defaults to 0.2.
    pub fn budget_retry_ratio(mut self, ratio: f32) -> Self {
        self.config.budget_retry_ratio = ratio;
        self
    }

    /// Seeds the jitter generator (`rand::rngs::StdRng::seed_from_u64`), for reproducible
    /// delays: each jittered backoff takes one `f64` draw, in the order retries are decided.
    /// Unseeded, draws come from the thread-local generator. Defaults to unseeded.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.config.rng_seed = Some(seed);
        self
    }

    /// The wall clock used to turn a `Retry-After` HTTP-date into a delay (and, in the
    /// reqwest-middleware stack, the time the next attempt is due). Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Adds an observer told about every retry. Observers accumulate; none by default.
    pub fn observer(mut self, observer: impl RetryObserver) -> Self {
        self.config.observers.push(Arc::new(observer));
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that cannot work.
    pub fn build(self) -> Result<RetryConfig, ConfigError> {
        let mut config = self.config;
        if config.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        let backoff = config.backoff;
        config.backoff =
            ExponentialBackoff::new(backoff.base, backoff.factor, backoff.max, backoff.jitter)?;
        config.schedule = match config.schedule {
            Schedule::Exponential(_) => Schedule::Exponential(config.backoff),
            #[cfg(feature = "backoff")]
            external @ Schedule::External(_) => external,
        };
        if config.max_retry_after.is_zero() && config.long_retry_after == LongRetryAfter::Fail {
            return Err(ConfigError::ZeroMaxRetryAfter);
        }
        if config.deadline == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroDeadline);
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&config.budget_ttl) {
            return Err(ConfigError::BudgetTtl(config.budget_ttl));
        }
        if config.budget_min_per_sec >= i32::MAX as u32 {
            return Err(ConfigError::BudgetMinPerSec(config.budget_min_per_sec));
        }
        if !(0.0..=1000.0).contains(&config.budget_retry_ratio) {
            return Err(ConfigError::BudgetRatio(config.budget_retry_ratio));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RetryEvent;

    #[test]
    fn defaults_are_valid_and_named() {
        let config = RetryConfig::builder().build().unwrap();
        assert_eq!(config.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        assert_eq!(config.backoff(), ExponentialBackoff::default());
        assert_eq!(config.max_retry_after(), DEFAULT_MAX_RETRY_AFTER);
        assert_eq!(config.deadline(), None);
        assert_eq!(config.long_retry_after(), DEFAULT_LONG_RETRY_AFTER);
        assert_eq!(config.retry_on_timeout(), DEFAULT_RETRY_ON_TIMEOUT);
        assert_eq!(config.retry_ambiguous(), DEFAULT_RETRY_AMBIGUOUS);
    }

    #[test]
    fn with_observer_adds_an_observer_and_keeps_the_settings() {
        let config = RetryConfig::builder()
            .max_attempts(2)
            .observer(|_: &RetryEvent| {})
            .build()
            .unwrap()
            .with_observer(|_: &RetryEvent| {});
        assert_eq!(config.observers.len(), 2, "observers accumulate");
        assert_eq!(config.max_attempts(), 2);
    }

    #[test]
    fn each_invalid_setting_is_named() {
        let build = |b: RetryConfigBuilder| b.build().unwrap_err();
        let b = RetryConfig::builder;
        assert_eq!(build(b().max_attempts(0)), ConfigError::ZeroAttempts);
        assert_eq!(build(b().factor(0.5)), ConfigError::InvalidFactor(0.5));
        assert!(matches!(
            build(b().base_delay(Duration::from_secs(60))),
            ConfigError::BaseAboveMax { .. }
        ));
        assert_eq!(
            build(b().deadline(Duration::ZERO)),
            ConfigError::ZeroDeadline
        );
        assert_eq!(
            build(b().max_retry_after(Duration::ZERO)),
            ConfigError::ZeroMaxRetryAfter
        );
        assert!(
            b().max_retry_after(Duration::ZERO)
                .long_retry_after(LongRetryAfter::RetryEarly)
                .build()
                .is_ok(),
            "a zero cap that ignores Retry-After is fine"
        );
        assert_eq!(
            build(b().budget_ttl(Duration::from_millis(10))),
            ConfigError::BudgetTtl(Duration::from_millis(10))
        );
        assert_eq!(
            build(b().budget_min_per_sec(u32::MAX)),
            ConfigError::BudgetMinPerSec(u32::MAX)
        );
        assert!(matches!(
            build(b().budget_retry_ratio(f32::NAN)),
            ConfigError::BudgetRatio(_)
        ));
    }

    #[test]
    fn budget_bound_matches_tps_budget() {
        use tower::retry::budget::Budget;
        for (min, ratio, requests) in [(10, 0.2, 100), (0, 0.5, 7), (3, 2.0, 5), (2, 0.0, 9)] {
            let config = RetryConfig::builder()
                .budget_min_per_sec(min)
                .budget_retry_ratio(ratio)
                .build()
                .unwrap();
            let budget = config.new_budget();
            for _ in 0..requests {
                budget.deposit();
            }
            let mut allowed = 0;
            while budget.withdraw() {
                allowed += 1;
            }
            assert_eq!(allowed, config.budget_retries(requests), "{min} {ratio}");
        }
    }
}
