//! Health of one deployment: cooldowns (a rejected key, a 429) and a circuit breaker.
//!
//! The state is behind a short lock taken only on failures and probes; a healthy deployment
//! is admitted by reading one atomic. Every change bumps a generation: an outcome is applied
//! only if the deployment is still in the generation the call was admitted under, so a
//! burst of calls that all fail the same way changes the state once.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use evolution_fallback::DEFAULT_FAILBACK_INTERVAL;
use tokio::time::Instant;

/// A deployment's state, as `evolution_deployment_state` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentState {
    /// Serving (gauge 0).
    Healthy,
    /// Cooling down after a rejected key or a 429: skipped until its cooldown ends, then one
    /// call probes it (gauge 1).
    Cooling,
    /// Its circuit is open after repeated server errors or timeouts: skipped until the
    /// breaker's open time ends, then one half-open call probes it (gauge 2).
    Open,
}

impl DeploymentState {
    /// `healthy`, `cooling` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Cooling => "cooling",
            Self::Open => "open",
        }
    }

    /// The value of `evolution_deployment_state`: 0, 1 or 2.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Healthy => 0.0,
            Self::Cooling => 1.0,
            Self::Open => 2.0,
        }
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a deployment stopped serving for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CooldownReason {
    /// Its key was rejected: by IAM (401/403), or by the API (401 after a fresh token, 403).
    KeyRejected,
    /// The API answered 429.
    RateLimited,
    /// Its circuit opened: too many server errors or timeouts in a window.
    CircuitOpen,
}

impl CooldownReason {
    /// `key_rejected`, `rate_limited` or `circuit_open`: the `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeyRejected => "key_rejected",
            Self::RateLimited => "rate_limited",
            Self::CircuitOpen => "circuit_open",
        }
    }
}

impl fmt::Display for CooldownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KeyRejected => "its key was rejected",
            Self::RateLimited => "it answered 429 Too Many Requests",
            Self::CircuitOpen => "its circuit is open after repeated failures",
        })
    }
}

/// Default cooldown after a 429 without a usable `Retry-After` (LiteLLM's default).
pub const DEFAULT_RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(5);
/// Longest cooldown a `Retry-After` may ask for.
pub const DEFAULT_MAX_RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(300);
/// Failures in [`DEFAULT_BREAKER_WINDOW`] that open a circuit.
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
/// The window failures are counted in.
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(30);
/// How long a circuit stays open before a half-open probe.
pub const DEFAULT_BREAKER_OPEN: Duration = Duration::from_secs(15);

/// How deployments cool down and when their circuits open.
///
/// ```
/// use std::time::Duration;
/// use evolution_pool::HealthConfig;
///
/// let health = HealthConfig::default()
///     .key_cooldown(Duration::from_secs(60))
///     .breaker(3, Duration::from_secs(10), Duration::from_secs(5));
/// assert_eq!(health.breaker_failures(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    key_cooldown: Duration,
    rate_limit_cooldown: Duration,
    max_rate_limit_cooldown: Duration,
    breaker_failures: u32,
    breaker_window: Duration,
    breaker_open: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            key_cooldown: DEFAULT_FAILBACK_INTERVAL,
            rate_limit_cooldown: DEFAULT_RATE_LIMIT_COOLDOWN,
            max_rate_limit_cooldown: DEFAULT_MAX_RATE_LIMIT_COOLDOWN,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_window: DEFAULT_BREAKER_WINDOW,
            breaker_open: DEFAULT_BREAKER_OPEN,
        }
    }
}

impl HealthConfig {
    /// How long a deployment whose key was rejected is skipped before one call probes it.
    /// Defaults to 5 minutes, the fallback's failback interval.
    pub fn key_cooldown(mut self, cooldown: Duration) -> Self {
        self.key_cooldown = cooldown;
        self
    }

    /// The cooldown after a 429 that has no usable `Retry-After`, and the longest one a
    /// `Retry-After` may ask for. Default 5 s and 5 minutes.
    pub fn rate_limit_cooldown(mut self, default: Duration, max: Duration) -> Self {
        self.rate_limit_cooldown = default;
        self.max_rate_limit_cooldown = max.max(default);
        self
    }

    /// The circuit breaker: `failures` server errors or timeouts within `window` open the
    /// circuit for `open`, then one half-open call probes it. Default 5 in 30 s, open 15 s.
    /// `failures` of 0 turns the breaker off.
    pub fn breaker(mut self, failures: u32, window: Duration, open: Duration) -> Self {
        self.breaker_failures = failures;
        self.breaker_window = window;
        self.breaker_open = open;
        self
    }

    /// The cooldown after a rejected key.
    pub fn key_cooldown_value(&self) -> Duration {
        self.key_cooldown
    }

    /// Failures that open a circuit (0: never).
    pub fn breaker_failures(&self) -> u32 {
        self.breaker_failures
    }

    /// The cooldown for a 429 that asked for `retry_after` (or nothing usable).
    pub(crate) fn rate_limit_for(&self, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or(self.rate_limit_cooldown)
            .min(self.max_rate_limit_cooldown)
    }
}

/// What one call did to a deployment, as health sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answered (any answer that says nothing against the deployment, 4xx included).
    Served,
    /// Its key was rejected.
    KeyRejected,
    /// 429, with what its `Retry-After` asked for.
    RateLimited(Option<Duration>),
    /// A server error, a failed request or a timeout.
    Failed,
    /// Nothing to learn (the caller left, IAM is down for every key).
    Neutral,
}

/// Whether a call may go to the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Yes, in this generation; `probe` if it is the one call testing a cooled deployment.
    Yes { generation: u64, probe: bool },
    /// No: it is cooling (or being probed) until about then.
    No {
        until: Instant,
        reason: CooldownReason,
    },
}

/// A state change, to be logged and observed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) from: DeploymentState,
    pub(crate) to: DeploymentState,
    /// Set when the change starts a cooldown (a failed probe restarts one without a change
    /// of state).
    pub(crate) cooldown: Option<CooldownReason>,
    pub(crate) until: Option<Instant>,
}

/// About 30 years: what a duration too large to add to the clock is cut to (as tokio and
/// the token crate's deadlines do).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `duration` after `now`, without overflowing: a cooldown of `Duration::MAX` is "for good".
pub(crate) fn after(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration)
        .unwrap_or_else(|| now + FAR_FUTURE)
}

/// How long callers skip a deployment whose probe is in flight.
const PROBE_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct Health {
    config: HealthConfig,
    /// Whether the deployment is healthy with no failure counted: the fast path.
    clean: AtomicBool,
    generation: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: DeploymentState,
    reason: Option<CooldownReason>,
    until: Instant,
    probing: bool,
    /// When the failures counted towards the breaker happened, oldest first: the last
    /// `breaker_failures` at most, so the window slides with them (a window that restarts
    /// at its first failure would miss N failures that straddle its end).
    failures: VecDeque<Instant>,
}

impl Health {
    pub(crate) fn new(config: HealthConfig) -> Self {
        let now = Instant::now();
        Self {
            config,
            clean: AtomicBool::new(true),
            generation: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                state: DeploymentState::Healthy,
                reason: None,
                until: now,
                probing: false,
                failures: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, the reason of a cooldown and when it ends.
    pub(crate) fn snapshot(&self) -> (DeploymentState, Option<CooldownReason>, Option<Instant>) {
        let inner = self.lock();
        match inner.state {
            DeploymentState::Healthy => (DeploymentState::Healthy, None, None),
            state => (state, inner.reason, Some(inner.until)),
        }
    }

    /// Whether a call may go to the deployment now.
    /// `now` is read only when the deployment is not clean: a healthy one is admitted
    /// without a clock read (most calls).
    pub(crate) fn admit(&self, now: impl FnOnce() -> Instant) -> Admit {
        // The generation before `clean`, as `cool` writes them the other way round: a call
        // that sees the new generation also sees `clean` false and takes the lock. Read the
        // other way, it could pair the old `clean` with the new generation and be admitted
        // into a cooldown as a call whose verdict counts.
        let generation = self.generation.load(Ordering::Acquire);
        if self.clean.load(Ordering::Acquire) {
            return Admit::Yes {
                generation,
                probe: false,
            };
        }
        let mut inner = self.lock();
        let generation = self.generation.load(Ordering::Acquire);
        let now = now();
        match inner.state {
            DeploymentState::Healthy => Admit::Yes {
                generation,
                probe: false,
            },
            _ if now < inner.until => Admit::No {
                until: inner.until,
                reason: inner.reason.unwrap_or(CooldownReason::CircuitOpen),
            },
            _ if inner.probing => Admit::No {
                until: after(now, PROBE_WAIT),
                reason: inner.reason.unwrap_or(CooldownReason::CircuitOpen),
            },
            _ => {
                inner.probing = true;
                Admit::Yes {
                    generation,
                    probe: true,
                }
            }
        }
    }

    /// A probe that ended without a verdict (the caller left, or the call was refused
    /// before it was sent): the next call may probe.
    pub(crate) fn release_probe(&self) {
        self.lock().probing = false;
    }

    /// Applies what a call admitted in `generation` learned.
    pub(crate) fn record(&self, generation: u64, probe: bool, verdict: Verdict) -> Option<Change> {
        let clean = self.clean.load(Ordering::Acquire);
        if clean && matches!(verdict, Verdict::Served | Verdict::Neutral) {
            return None;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        if probe {
            inner.probing = false;
        }
        if self.generation.load(Ordering::Acquire) != generation {
            // The state changed since this call was admitted: what it saw is old news.
            return None;
        }
        match verdict {
            Verdict::Neutral => None,
            Verdict::Served => {
                inner.failures.clear();
                let from = inner.state;
                if from == DeploymentState::Healthy || probe {
                    self.heal(&mut inner);
                }
                (from != DeploymentState::Healthy && probe).then_some(Change {
                    from,
                    to: DeploymentState::Healthy,
                    cooldown: None,
                    until: None,
                })
            }
            Verdict::KeyRejected => Some(self.cool(
                &mut inner,
                DeploymentState::Cooling,
                CooldownReason::KeyRejected,
                after(now, self.config.key_cooldown),
            )),
            Verdict::RateLimited(retry_after) => Some(self.cool(
                &mut inner,
                DeploymentState::Cooling,
                CooldownReason::RateLimited,
                after(now, self.config.rate_limit_for(retry_after)),
            )),
            Verdict::Failed => {
                if probe && inner.state != DeploymentState::Healthy {
                    // The half-open probe failed: open again.
                    return Some(self.cool(
                        &mut inner,
                        DeploymentState::Open,
                        CooldownReason::CircuitOpen,
                        after(now, self.config.breaker_open),
                    ));
                }
                if self.config.breaker_failures == 0 || inner.state != DeploymentState::Healthy {
                    return None;
                }
                let window = self.config.breaker_window;
                while inner
                    .failures
                    .front()
                    .is_some_and(|&at| now.saturating_duration_since(at) > window)
                {
                    inner.failures.pop_front();
                }
                inner.failures.push_back(now);
                self.clean.store(false, Ordering::Release);
                let failures = u32::try_from(inner.failures.len()).unwrap_or(u32::MAX);
                (failures >= self.config.breaker_failures).then(|| {
                    self.cool(
                        &mut inner,
                        DeploymentState::Open,
                        CooldownReason::CircuitOpen,
                        after(now, self.config.breaker_open),
                    )
                })
            }
        }
    }

    fn heal(&self, inner: &mut Inner) {
        if inner.state != DeploymentState::Healthy {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        inner.state = DeploymentState::Healthy;
        inner.reason = None;
        inner.failures.clear();
        self.clean.store(true, Ordering::Release);
    }

    fn cool(
        &self,
        inner: &mut Inner,
        to: DeploymentState,
        reason: CooldownReason,
        until: Instant,
    ) -> Change {
        let from = inner.state;
        self.clean.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        inner.state = to;
        inner.reason = Some(reason);
        inner.until = until;
        inner.failures.clear();
        Change {
            from,
            to,
            cooldown: Some(reason),
            until: Some(until),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(health: &Health) -> (u64, bool) {
        match health.admit(Instant::now) {
            Admit::Yes { generation, probe } => (generation, probe),
            Admit::No { .. } => panic!("not admitted"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejected_key_cools_once_then_one_call_probes() {
        let health = Health::new(HealthConfig::default().key_cooldown(Duration::from_secs(60)));
        let (generation, _) = admitted(&health);
        let change = health.record(generation, false, Verdict::KeyRejected);
        assert_eq!(change.map(|c| c.to), Some(DeploymentState::Cooling));
        assert_eq!(health.record(generation, false, Verdict::KeyRejected), None);
        assert!(matches!(health.admit(Instant::now), Admit::No { .. }));
        tokio::time::advance(Duration::from_secs(60)).await;
        let (generation, probe) = admitted(&health);
        assert!(probe);
        assert!(
            matches!(health.admit(Instant::now), Admit::No { .. }),
            "one probe at a time"
        );
        let change = health.record(generation, true, Verdict::Served);
        assert_eq!(change.map(|c| c.to), Some(DeploymentState::Healthy));
        assert!(!admitted(&health).1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_after_failures_in_its_window() {
        let health = Health::new(HealthConfig::default().breaker(
            3,
            Duration::from_secs(10),
            Duration::from_secs(5),
        ));
        let (generation, _) = admitted(&health);
        assert_eq!(health.record(generation, false, Verdict::Failed), None);
        tokio::time::advance(Duration::from_secs(11)).await;
        // The window passed: counting starts again.
        assert_eq!(health.record(generation, false, Verdict::Failed), None);
        assert_eq!(health.record(generation, false, Verdict::Failed), None);
        let change = health.record(generation, false, Verdict::Failed);
        assert_eq!(change.map(|c| c.to), Some(DeploymentState::Open));
        tokio::time::advance(Duration::from_secs(5)).await;
        let (generation, probe) = admitted(&health);
        assert!(probe);
        let change = health.record(generation, true, Verdict::Failed);
        assert_eq!(
            change.map(|c| (c.from, c.to)),
            Some((DeploymentState::Open, DeploymentState::Open))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_cools_for_its_retry_after_capped() {
        let health = Health::new(HealthConfig::default());
        let (generation, _) = admitted(&health);
        let change = health
            .record(
                generation,
                false,
                Verdict::RateLimited(Some(Duration::from_secs(3600))),
            )
            .unwrap();
        assert_eq!(
            change.until,
            Some(Instant::now() + DEFAULT_MAX_RATE_LIMIT_COOLDOWN)
        );
    }
}
