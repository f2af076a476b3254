//! [`TokenManager`]: the shared, single-flight, refresh-ahead token cache.

mod builder;
mod local;
mod monitor;
pub(crate) mod schedule;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, ArcSwapOption};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

#[cfg(feature = "shared-cache")]
pub use self::builder::MAX_SHARED_CACHE_LOCK_TTL;
pub use self::builder::{
    DEFAULT_AUTH_URL, DEFAULT_FETCH_ATTEMPTS, DEFAULT_FETCH_TIMEOUT, DEFAULT_REFRESH_AHEAD,
    DEFAULT_REFRESH_BUFFER, ENV_TOKEN_URL, MAX_FETCH_RETRY_AFTER, MAX_FETCH_TIMEOUT,
    TokenManagerBuilder, parse_endpoint_url,
};
pub use self::monitor::MonitorGuard;
use self::schedule::{Cached, Schedule};
use crate::event::Observers;
use crate::fetch::IamClient;
use crate::{AccessToken, Credentials, RefreshTrigger, TokenError, TokenEvent};

/// Backoff between refresh attempts after a failure while a valid token is cached.
const FAILED_REFRESH_BACKOFF_BASE: Duration = Duration::from_secs(1);
const FAILED_REFRESH_BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Fetches, caches and refreshes IAM access tokens for one key.
///
/// - The first [`get_token`](Self::get_token) fetches; later calls return the cached
///   token with an atomic load (no lock, no await).
/// - Inside the refresh-ahead window the first caller starts a background refresh
///   and everybody keeps the cached token; inside the refresh buffer (30 s by default)
///   callers wait for the new one. Any number of concurrent callers cause one IAM request.
/// - The refresh runs in its own task: a caller that gives up never cancels it.
/// - If a refresh fails while the cached token has not expired, that token keeps being
///   served and IAM is retried with jittered backoff.
///
/// `Clone` shares the cache. Needs a tokio runtime (refreshes are spawned on it).
///
/// ```no_run
/// use evolution_token::{Credentials, TokenManager};
///
/// # async fn run() -> Result<(), evolution_token::TokenError> {
/// let tokens = TokenManager::builder(Credentials::from_env()?).build()?;
/// let token = tokens.get_token().await?;
/// println!("token valid for {:?}", token.expires_in());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenManager {
    shared: Arc<Shared>,
}

struct Shared {
    iam: IamClient,
    schedule: Schedule,
    credentials: ArcSwap<Credentials>,
    cache: ArcSwapOption<Cached>,
    /// Cheap check on the hot path so callers in the ahead window do not all take the lock.
    refreshing: AtomicBool,
    /// Whether the cache was emptied on purpose, for the refresh trigger.
    invalidated: AtomicBool,
    next_refresh_id: AtomicU64,
    refresh: Mutex<RefreshState>,
    observers: Observers,
    /// Consulted inside the refresh task only: the hot path never sees it.
    #[cfg(feature = "shared-cache")]
    shared_cache: Option<crate::store::SharedCache>,
}

type Outcome = Result<AccessToken, TokenError>;

#[derive(Default)]
struct RefreshState {
    in_flight: Option<InFlight>,
    /// Set after a failed refresh: no new attempt before this while a valid token is cached.
    retry_not_before: Option<Instant>,
    failures: u32,
    /// Bumped by key rotation: a refresh started with older credentials must not install its token.
    epoch: u64,
}

struct InFlight {
    id: u64,
    result: watch::Receiver<Option<Outcome>>,
}

/// A snapshot of a manager's state, from [`TokenManager::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The key id in use.
    pub key_id: String,
    /// Whether a token is cached.
    pub has_token: bool,
    /// Time left before the cached token expires.
    pub expires_in: Option<Duration>,
    /// Whether the cached token is handed out without waiting (outside the refresh buffer).
    pub valid: bool,
    /// The configured refresh buffer.
    pub refresh_buffer: Duration,
    /// Whether an IAM exchange is running.
    pub refresh_in_flight: bool,
}

impl TokenManager {
    /// Starts configuring a manager for `credentials`.
    pub fn builder(credentials: Credentials) -> TokenManagerBuilder {
        TokenManagerBuilder::new(credentials)
    }

    /// A manager for `EVOLUTION_KEY_ID` / `EVOLUTION_SECRET`, with the auth URL from
    /// `EVOLUTION_TOKEN_URL` when it is set, and every other setting at its default.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfiguration`] naming the variable to set or fix.
    pub fn from_env() -> Result<Self, TokenError> {
        TokenManagerBuilder::from_env()?.build()
    }

    /// Returns a token that is not inside the refresh buffer, fetching one if needed.
    ///
    /// # Errors
    ///
    /// The [`TokenError`] of the IAM exchange, when no unexpired token is cached.
    pub async fn get_token(&self) -> Result<AccessToken, TokenError> {
        match self.cached() {
            Some(token) => Ok(token),
            None => self.get_token_slow().await,
        }
    }

    /// The cached token if it can be handed out now, without waiting; starts a
    /// background refresh when the token is inside the refresh-ahead window.
    ///
    /// This is the hot path of [`get_token`](Self::get_token): an atomic load and a clock read.
    pub fn cached(&self) -> Option<AccessToken> {
        let guard = self.shared.cache.load();
        let cached = guard.as_ref()?;
        let now = Instant::now();
        if now >= cached.usable_until {
            return None;
        }
        if now >= cached.refresh_at && !self.shared.refreshing.load(Ordering::Relaxed) {
            self.shared.refresh_ahead(now);
        }
        Some(local::local_copy(&self.shared, &cached.token))
    }

    async fn get_token_slow(&self) -> Result<AccessToken, TokenError> {
        let shared = &self.shared;
        let seen = shared.cache.load_full();
        let now = Instant::now();
        let trigger = match &seen {
            Some(cached) => {
                if now < cached.usable_until {
                    // Refreshed by another caller between the fast path and here.
                    return Ok(cached.token.clone());
                }
                if now < cached.token.expires_at() && shared.backing_off(now) {
                    // IAM failed a moment ago: serve the stale-but-valid token, do not pile on.
                    return Ok(shared.serve_stale(&cached.token));
                }
                RefreshTrigger::Expired
            }
            None if shared.invalidated.load(Ordering::Relaxed) => RefreshTrigger::Invalidated,
            None => RefreshTrigger::FirstUse,
        };
        match shared.join_or_start(trigger).await {
            Ok(token) => Ok(token),
            Err(error) => match seen {
                Some(cached) if !cached.token.is_expired() => Ok(shared.serve_stale(&cached.token)),
                _ => Err(error),
            },
        }
    }

    /// Drops the cached token; the next caller fetches a new one.
    pub fn invalidate(&self) {
        let shared = &self.shared;
        shared.invalidated.store(true, Ordering::Relaxed);
        if let Some(old) = shared.cache.swap(None) {
            shared.emit_invalidated(&old.token);
        }
    }

    /// Drops the cached token only if it is `token`: a 401 for an old token must not
    /// throw away the fresh one another caller already fetched. Returns whether it did.
    pub fn invalidate_if_current(&self, token: &AccessToken) -> bool {
        let shared = &self.shared;
        let current = shared.cache.load();
        match &*current {
            Some(cached) if cached.token.same_as(token) => {
                let previous = shared.cache.compare_and_swap(&*current, None);
                let swapped = previous.as_ref().is_some_and(|p| p.token.same_as(token));
                if swapped {
                    shared.invalidated.store(true, Ordering::Relaxed);
                    shared.emit_invalidated(token);
                }
                swapped
            }
            _ => false,
        }
    }

    /// Replaces the key (rotation). The cached token of the old key is dropped at once
    /// and a refresh still running with the old key will not install its token.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfiguration`] if the key id or secret is empty; the old
    /// key stays in use then.
    pub fn set_credentials(&self, credentials: Credentials) -> Result<(), TokenError> {
        credentials.validate()?;
        let shared = &self.shared;
        let mut state = shared.lock_refresh();
        tracing::info!(
            old_key_id = shared.credentials.load().key_id(),
            new_key_id = credentials.key_id(),
            "token credentials replaced"
        );
        shared.credentials.store(Arc::new(credentials));
        state.epoch += 1;
        state.in_flight = None;
        state.failures = 0;
        state.retry_not_before = None;
        shared.refreshing.store(false, Ordering::Relaxed);
        shared.invalidated.store(true, Ordering::Relaxed);
        if let Some(old) = shared.cache.swap(None) {
            shared.emit_invalidated(&old.token);
        }
        Ok(())
    }

    /// The key id currently in use.
    pub fn key_id(&self) -> Arc<str> {
        self.shared.credentials.load().shared_key_id()
    }

    /// The IAM token endpoint.
    pub fn auth_url(&self) -> &str {
        &self.shared.iam.auth_url
    }

    /// A snapshot of the cache state.
    pub fn info(&self) -> TokenInfo {
        let shared = &self.shared;
        let cached = shared.cache.load();
        let now = Instant::now();
        TokenInfo {
            key_id: shared.credentials.load().key_id().to_owned(),
            has_token: cached.is_some(),
            expires_in: cached.as_ref().map(|c| c.token.expires_in()),
            valid: cached.as_ref().is_some_and(|c| now < c.usable_until),
            refresh_buffer: shared.schedule.buffer,
            refresh_in_flight: shared.lock_refresh().in_flight.is_some(),
        }
    }

    /// Starts a task that keeps the token fresh with no callers at all, so that even
    /// the first request after a quiet period does not wait on IAM. It stops when
    /// the returned guard is dropped.
    ///
    /// Must be called inside a tokio runtime.
    pub fn spawn_monitor(&self) -> MonitorGuard {
        MonitorGuard::spawn(self.clone())
    }

    /// Fetches now unless a fresh token is cached: the monitor's step.
    async fn refresh_if_due(&self) -> Result<(), TokenError> {
        let shared = &self.shared;
        if let Some(cached) = &*shared.cache.load()
            && Instant::now() < cached.refresh_at
        {
            return Ok(());
        }
        shared
            .join_or_start(RefreshTrigger::Monitor)
            .await
            .map(drop)
    }

    /// When the monitor should next look: the refresh point of the cached token, or the
    /// end of the failure backoff, or now.
    fn next_due(&self) -> Instant {
        let shared = &self.shared;
        let due = shared
            .cache
            .load()
            .as_ref()
            .map_or_else(Instant::now, |c| c.refresh_at);
        match shared.lock_refresh().retry_not_before {
            Some(not_before) => due.max(not_before),
            None => due,
        }
    }
}

impl Shared {
    fn lock_refresh(&self) -> MutexGuard<'_, RefreshState> {
        // The lock is never held across an await or user code, so poisoning only
        // follows a panic inside this module; the state is still consistent then.
        self.refresh
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.lock_refresh()
            .retry_not_before
            .is_some_and(|not_before| now < not_before)
    }

    fn serve_stale(&self, token: &AccessToken) -> AccessToken {
        tracing::warn!(
            key_id = token.key_id(),
            expires_in = ?token.expires_in(),
            "token refresh failed; serving the cached token until it expires"
        );
        self.observers.emit(TokenEvent::StaleServed {
            key_id: self.credentials.load().shared_key_id(),
            expires_in: token.expires_in(),
        });
        token.clone()
    }

    fn emit_invalidated(&self, token: &AccessToken) {
        tracing::debug!(key_id = token.key_id(), "cached token invalidated");
        self.observers.emit(TokenEvent::Invalidated {
            key_id: self.credentials.load().shared_key_id(),
        });
    }

    /// Starts a background refresh from the ahead window unless one runs or IAM is backing off.
    fn refresh_ahead(self: &Arc<Self>, now: Instant) {
        let mut state = self.lock_refresh();
        if state.retry_not_before.is_some_and(|t| now < t) {
            return;
        }
        // Tokens are installed under this lock: re-checking here means a refresh that
        // finished since the caller looked is not repeated.
        if self
            .cache
            .load()
            .as_ref()
            .is_some_and(|c| now < c.refresh_at)
        {
            return;
        }
        if !self.is_running(&state) {
            drop(self.start(&mut state, RefreshTrigger::Ahead));
        }
    }

    fn is_running(&self, state: &RefreshState) -> bool {
        // A closed channel means the task is gone (runtime shut down): not running.
        state
            .in_flight
            .as_ref()
            .is_some_and(|f| f.result.borrow().is_none() && f.result.has_changed().is_ok())
    }

    /// Joins the running refresh or starts one, then waits for its outcome.
    async fn join_or_start(self: &Arc<Self>, trigger: RefreshTrigger) -> Outcome {
        let mut result = {
            let mut state = self.lock_refresh();
            // Tokens are installed under this lock: a refresh that finished since the
            // caller looked is not repeated.
            if let Some(cached) = &*self.cache.load() {
                let now = Instant::now();
                let fresh_until = match trigger {
                    RefreshTrigger::Monitor | RefreshTrigger::Ahead => cached.refresh_at,
                    _ => cached.usable_until,
                };
                if now < fresh_until {
                    return Ok(cached.token.clone());
                }
            }
            match &state.in_flight {
                Some(f) if self.is_running(&state) => f.result.clone(),
                _ => self.start(&mut state, trigger),
            }
        };
        match result.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Err(TokenError::Aborted)),
            Err(_closed) => Err(TokenError::Aborted),
        }
    }

    fn start(
        self: &Arc<Self>,
        state: &mut RefreshState,
        trigger: RefreshTrigger,
    ) -> watch::Receiver<Option<Outcome>> {
        let (tx, rx) = watch::channel(None);
        let id = self.next_refresh_id.fetch_add(1, Ordering::Relaxed);
        state.in_flight = Some(InFlight {
            id,
            result: rx.clone(),
        });
        self.refreshing.store(true, Ordering::Relaxed);
        let epoch = state.epoch;
        let credentials = self.credentials.load_full();
        let shared = Arc::clone(self);
        // Its own task: a caller that is dropped mid-refresh cancels nothing.
        tokio::spawn(async move {
            let outcome = shared.refresh(&credentials, trigger, id, epoch).await;
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    async fn refresh(
        &self,
        credentials: &Credentials,
        trigger: RefreshTrigger,
        id: u64,
        epoch: u64,
    ) -> Outcome {
        let key_id = credentials.shared_key_id();
        tracing::debug!(
            key_id = &*key_id,
            trigger = trigger.as_str(),
            "token refresh started"
        );
        self.observers.emit(TokenEvent::RefreshStarted {
            key_id: key_id.clone(),
            trigger,
        });
        let started = Instant::now();
        let fetched = self.obtain(credentials, trigger).await;
        let duration = started.elapsed();

        let mut state = self.lock_refresh();
        let ours = state.in_flight.as_ref().is_some_and(|f| f.id == id);
        if ours {
            state.in_flight = None;
            self.refreshing.store(false, Ordering::Relaxed);
        }
        let (token, lifetime) = match fetched {
            Ok(fetched) => fetched,
            Err(error) => {
                if ours {
                    state.failures += 1;
                    state.retry_not_before = Some(Instant::now() + failure_backoff(state.failures));
                }
                drop(state);
                tracing::warn!(key_id = &*key_id, trigger = trigger.as_str(), ?duration, %error, "token refresh failed");
                self.observers.emit(TokenEvent::RefreshFailed {
                    key_id,
                    trigger,
                    duration,
                    error: error.kind(),
                });
                return Err(error);
            }
        };
        // Install under the lock, so key rotation cannot interleave.
        if state.epoch == epoch {
            self.cache
                .store(Some(Arc::new(self.schedule.plan(token.clone(), lifetime))));
            self.invalidated.store(false, Ordering::Relaxed);
            state.failures = 0;
            state.retry_not_before = None;
        }
        drop(state);
        tracing::debug!(
            key_id = &*key_id,
            trigger = trigger.as_str(),
            ?duration,
            ?lifetime,
            "token refreshed"
        );
        self.observers.emit(TokenEvent::RefreshSucceeded {
            key_id,
            trigger,
            duration,
            lifetime,
        });
        Ok(token)
    }
}

impl Shared {
    /// A token and the lifetime IAM granted it: through the shared cache when there is
    /// one, else straight from IAM.
    async fn obtain(
        &self,
        credentials: &Credentials,
        trigger: RefreshTrigger,
    ) -> Result<(AccessToken, Duration), TokenError> {
        #[cfg(feature = "shared-cache")]
        if let Some(cache) = &self.shared_cache {
            let refresh = crate::store::Refresh {
                credentials,
                auth_url: &self.iam.auth_url,
                trigger,
                schedule: &self.schedule,
                observers: &self.observers,
            };
            return cache.obtain(refresh, || self.fetch(credentials)).await;
        }
        let _ = trigger;
        self.fetch(credentials).await
    }

    /// The IAM exchange.
    async fn fetch(
        &self,
        credentials: &Credentials,
    ) -> Result<(AccessToken, Duration), TokenError> {
        let fetched = self.iam.fetch(credentials).await?;
        let lifetime = fetched.grant.expires_in;
        AccessToken::new(
            fetched.grant.access_token,
            credentials.shared_key_id(),
            fetched.sent_at,
            fetched.sent_at + lifetime,
        )
        .map(|token| (token, lifetime))
        .ok_or_else(|| TokenError::InvalidResponse {
            reason: crate::InvalidResponseReason::InvalidAccessToken,
            auth_url: self.iam.auth_url.clone(),
        })
    }
}

fn failure_backoff(failures: u32) -> Duration {
    let exp = FAILED_REFRESH_BACKOFF_BASE
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(FAILED_REFRESH_BACKOFF_CAP);
    exp.mul_f64(rand::rng().random_range(0.5..=1.0))
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        let mut f = f.debug_struct("TokenManager");
        f.field("key_id", &shared.credentials.load().key_id())
            .field("auth_url", &shared.iam.auth_url)
            .field("has_token", &shared.cache.load().is_some())
            .field("refresh_buffer", &shared.schedule.buffer)
            .field("refresh_ahead", &shared.schedule.ahead)
            .field("observers", &shared.observers);
        #[cfg(feature = "shared-cache")]
        f.field("shared_cache", &shared.shared_cache);
        f.finish()
    }
}
