//! [`TokenManager`]: the shared, single-flight, refresh-ahead token cache.

mod backoff;
mod builder;
mod local;
mod monitor;
mod refresh;
pub(crate) mod schedule;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::time::{Duration, Instant};

use self::backoff::Backoff;
pub use self::backoff::{
    FAILED_REFRESH_BACKOFF_BASE, FAILED_REFRESH_BACKOFF_CAP, MAX_REFRESH_RETRY_AFTER,
};
#[cfg(feature = "shared-cache")]
pub use self::builder::MAX_SHARED_CACHE_LOCK_TTL;
pub use self::builder::{
    DEFAULT_AUTH_URL, DEFAULT_FETCH_ATTEMPTS, DEFAULT_FETCH_TIMEOUT, DEFAULT_REFRESH_AHEAD,
    DEFAULT_REFRESH_BUFFER, ENV_TOKEN_URL, MAX_FETCH_RETRY_AFTER, MAX_FETCH_TIMEOUT,
    TokenManagerBuilder, parse_endpoint_url,
};
pub use self::monitor::MonitorGuard;
use self::refresh::{Asker, RefreshState};
use self::schedule::{Cached, Schedule};
use crate::event::Observers;
use crate::fetch::IamClient;
use crate::{AccessToken, Credentials, TokenError, TokenEvent};

/// Fetches, caches and refreshes IAM access tokens for one key.
///
/// - The first [`get_token`](Self::get_token) fetches; later calls return the cached
///   token with an atomic load (no lock, no await).
/// - Inside the refresh-ahead window the first caller starts a background refresh
///   and everybody keeps the cached token; inside the refresh buffer (30 s by default)
///   callers wait for the new one. Any number of concurrent callers cause one IAM request.
/// - The refresh runs in its own task: a caller that gives up never cancels it. A task
///   that dies (a panicking observer or store, its runtime shut down) fails its refresh
///   with [`TokenError::Aborted`] and leaves nothing stuck.
/// - After a failed refresh, no refresh starts (whatever asks for it: a caller, the
///   refresh-ahead window, the monitor) before a backoff of 1 s, doubling with each failure
///   in a row up to 30 s ([`FAILED_REFRESH_BACKOFF_BASE`], [`FAILED_REFRESH_BACKOFF_CAP`]),
///   jittered over its later half. Meanwhile callers get the cached
///   token while it has not expired, and otherwise the failure's error at once: an IAM
///   outage costs IAM one refresh (up to `fetch_attempts` requests) per backoff, however
///   many callers there are.
///
/// `Clone` shares the cache. Needs a tokio runtime to refresh on; without one,
/// [`cached`](Self::cached) still serves the cached token and a refresh fails with
/// [`TokenError::Aborted`].
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
    /// After a failure: no refresh starts before its end (read by the hot path too).
    backoff: Backoff,
    next_refresh_id: AtomicU64,
    refresh: Mutex<RefreshState>,
    observers: Observers,
    /// Consulted inside the refresh task only: the hot path never sees it.
    #[cfg(feature = "shared-cache")]
    shared_cache: Option<crate::store::SharedCache>,
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

    /// A manager for `EVOLUTION_API_KEY`, or else `EVOLUTION_KEY_ID` / `EVOLUTION_SECRET`,
    /// with the auth URL from `EVOLUTION_TOKEN_URL` when it is set, and every other setting
    /// at its default (see [`TokenManagerBuilder::from_env`]).
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
    /// When no unexpired token is cached: the [`TokenError`] of the IAM exchange, or, while
    /// the manager backs off after a failed refresh, that failure's error at once.
    pub async fn get_token(&self) -> Result<AccessToken, TokenError> {
        match self.cached() {
            Some(token) => Ok(token),
            None => self.get_token_slow().await,
        }
    }

    /// The cached token if it can be handed out now, without waiting; starts a
    /// background refresh when the token is inside the refresh-ahead window (and no
    /// refresh runs, the failure backoff allows, and a tokio runtime is there to run it).
    ///
    /// This is the hot path of [`get_token`](Self::get_token): atomic loads and a clock
    /// read, no lock, during an IAM outage too.
    pub fn cached(&self) -> Option<AccessToken> {
        let shared = &self.shared;
        let guard = shared.cache.load();
        let cached = guard.as_ref()?;
        let now = Instant::now();
        if now >= cached.usable_until {
            return None;
        }
        if now >= cached.refresh_at
            && !shared.refreshing.load(Ordering::Relaxed)
            && !shared.backoff.is_running(now)
        {
            shared.refresh_ahead(now);
        }
        Some(local::local_copy(shared, &cached.token))
    }

    async fn get_token_slow(&self) -> Result<AccessToken, TokenError> {
        let shared = &self.shared;
        let seen = shared.cache.load_full();
        if let Some(cached) = &seen
            && Instant::now() < cached.usable_until
        {
            // Refreshed by another caller between the fast path and here.
            return Ok(cached.token.clone());
        }
        if let Some(cached) = &seen
            && !cached.token.is_expired()
            && shared.backoff.is_running(Instant::now())
        {
            // IAM failed a moment ago and no refresh may start yet: serve the
            // stale-but-valid token without taking the refresh lock.
            return Ok(shared.serve_stale(&cached.token));
        }
        match shared.join_or_start(Asker::Caller).await {
            Ok(token) => Ok(token),
            Err(error) => match seen {
                // IAM failed (now, or a moment ago and it is backing off): serve the
                // stale-but-valid token rather than nothing.
                Some(cached) if !cached.token.is_expired() => Ok(shared.serve_stale(&cached.token)),
                _ => Err(error),
            },
        }
    }

    /// Drops the cached token; the next caller fetches a new one, and a shared cache is
    /// never asked for the dropped one again.
    pub fn invalidate(&self) {
        let shared = &self.shared;
        let dropped = {
            let mut state = shared.lock_refresh();
            state.invalidated = true;
            let dropped = shared.cache.swap(None);
            if let Some(old) = &dropped {
                state.rejected = Some(old.token.clone());
            }
            dropped
        };
        if let Some(old) = dropped {
            shared.emit_invalidated(&old.token);
        }
    }

    /// Drops the cached token only if it is `token`: a 401 for an old token must not
    /// throw away the fresh one another caller already fetched. Returns whether it did.
    ///
    /// The refresh that follows carries `token` as rejected: with a shared cache, a stored
    /// token with the same value is never taken back.
    pub fn invalidate_if_current(&self, token: &AccessToken) -> bool {
        let shared = &self.shared;
        let dropped = {
            // Under the refresh lock, with the rejected token: a refresh starting after
            // this sees both, one that installs a token cannot interleave.
            let mut state = shared.lock_refresh();
            let current = shared.cache.load();
            let is_current = current.as_ref().is_some_and(|c| c.token.same_as(token));
            if is_current {
                shared.cache.store(None);
                state.invalidated = true;
                state.rejected = Some(token.clone());
            }
            is_current
        };
        if dropped {
            shared.emit_invalidated(token);
        }
        dropped
    }

    /// Replaces the key (rotation). The cached token of the old key is dropped at once
    /// and a refresh still running with the old key will not install its token; a failure
    /// backoff of the old key ends.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidConfiguration`] if the key id or secret is empty; the old
    /// key stays in use then.
    pub fn set_credentials(&self, credentials: Credentials) -> Result<(), TokenError> {
        credentials.validate()?;
        let shared = &self.shared;
        let new_key_id = credentials.shared_key_id();
        let (old_key_id, dropped) = {
            let mut state = shared.lock_refresh();
            let old = shared.credentials.swap(Arc::new(credentials));
            state.epoch += 1;
            state.in_flight = None;
            state.failures = 0;
            state.last_error = None;
            state.rejected = None;
            state.invalidated = true;
            shared.backoff.clear();
            shared.refreshing.store(false, Ordering::Relaxed);
            (old.shared_key_id(), shared.cache.swap(None))
        };
        tracing::info!(
            old_key_id = &*old_key_id,
            new_key_id = &*new_key_id,
            "token credentials replaced"
        );
        if let Some(old) = dropped {
            shared.emit_invalidated(&old.token);
        }
        Ok(())
    }

    /// The key id currently in use; for a static API key, its non-secret label
    /// (see [`Credentials::api_key`]).
    pub fn key_id(&self) -> Arc<str> {
        self.shared.credentials.load().shared_key_id()
    }

    /// Whether the credentials in use are a static API key, which is handed out as the
    /// token without an IAM request, rather than a key id and secret.
    pub fn is_api_key(&self) -> bool {
        self.shared.credentials.load().is_api_key()
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
            refresh_in_flight: shared.is_running(&shared.lock_refresh()),
        }
    }

    /// Starts a task that keeps the token fresh with no callers at all, so that even
    /// the first request after a quiet period does not wait on IAM. It stops when
    /// the returned guard is dropped. After a failed refresh it waits out the backoff.
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
        shared.join_or_start(Asker::Monitor).await.map(drop)
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
        match shared.backoff.until() {
            Some(until) => due.max(until),
            None => due,
        }
    }
}

impl Shared {
    fn serve_stale(&self, token: &AccessToken) -> AccessToken {
        tracing::warn!(
            key_id = token.key_id(),
            expires_in = ?token.expires_in(),
            "token refresh failed; serving the cached token until it expires"
        );
        self.observers.emit(TokenEvent::StaleServed {
            key_id: token.shared_key_id(),
            expires_in: token.expires_in(),
        });
        token.clone()
    }

    /// Tells observers that `token` was dropped; called with no lock held.
    fn emit_invalidated(&self, token: &AccessToken) {
        tracing::debug!(key_id = token.key_id(), "cached token invalidated");
        self.observers.emit(TokenEvent::Invalidated {
            key_id: token.shared_key_id(),
        });
    }
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
