//! The refresh engine: one IAM exchange at a time per manager, joined by everybody who
//! asks while it runs, held back by the failure backoff, and its outcome installed under
//! the refresh lock.
//!
//! [`TokenManager`](super::TokenManager) is the public face; this is what runs behind it
//! once the hot path finds no token it may hand out. Each refresh runs as a [`RefreshTask`]
//! (`task.rs`), which settles it however the task ends.

mod task;

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use self::task::RefreshTask;
use super::Shared;
use crate::error::AbortReason;
use crate::{AccessToken, Credentials, RefreshTrigger, TokenError};

pub(super) type Outcome = Result<AccessToken, TokenError>;

/// What changes with refreshes. The lock is held for field updates only: never across an
/// await, and never while user code (an observer, a store, a log subscriber) runs.
#[derive(Default)]
pub(super) struct RefreshState {
    pub(super) in_flight: Option<InFlight>,
    /// Failed refreshes in a row: the backoff grows with them.
    pub(super) failures: u32,
    /// The last failure, answered at once while its backoff runs.
    pub(super) last_error: Option<TokenError>,
    /// The token the API rejected (a 401) or [`TokenManager::invalidate`](super::TokenManager::invalidate) dropped, until a
    /// new one is installed: refreshes carry it so the shared cache never hands it back.
    pub(super) rejected: Option<AccessToken>,
    /// Whether the cache was emptied on purpose, for the refresh trigger.
    pub(super) invalidated: bool,
    /// Bumped by key rotation: a refresh started with older credentials must not install its token.
    pub(super) epoch: u64,
}

pub(super) struct InFlight {
    id: u64,
    result: watch::Receiver<Option<Outcome>>,
}

/// Who asks [`Shared::join_or_start`] for a token, which decides what "fresh" means.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asker {
    /// A caller that needs a token it may use now.
    Caller,
    /// The monitor, which wants the token refreshed once its refresh point has passed.
    Monitor,
}

impl Shared {
    pub(super) fn lock_refresh(&self) -> MutexGuard<'_, RefreshState> {
        // The lock is never held across an await or user code, so poisoning only
        // follows a panic inside the manager; the state is still consistent then.
        self.refresh
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a background refresh from the ahead window unless one runs, IAM is backing
    /// off, or there is no runtime to run it on (then the cached token is simply served).
    pub(super) fn refresh_ahead(self: &Arc<Self>, now: Instant) {
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let task = {
            let mut state = self.lock_refresh();
            if self.backoff.is_running(now) || self.is_running(&state) {
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
            self.prepare(&mut state, RefreshTrigger::Ahead, runtime).1
        };
        task.spawn();
    }

    pub(super) fn is_running(&self, state: &RefreshState) -> bool {
        // A closed channel means the task is gone without an answer: not running. (Its
        // `Drop` answers and clears `in_flight`; this is belt and braces.)
        state
            .in_flight
            .as_ref()
            .is_some_and(|f| f.result.borrow().is_none() && f.result.has_changed().is_ok())
    }

    /// Joins the running refresh or starts one (unless backing off: then the last error),
    /// then waits for its outcome.
    pub(super) async fn join_or_start(self: &Arc<Self>, asker: Asker) -> Outcome {
        let runtime = Handle::try_current();
        let (mut result, task) = {
            let mut state = self.lock_refresh();
            let now = Instant::now();
            // Tokens are installed under this lock: a refresh that finished since the
            // caller looked is not repeated.
            if let Some(cached) = &*self.cache.load() {
                let fresh_until = match asker {
                    Asker::Monitor => cached.refresh_at,
                    Asker::Caller => cached.usable_until,
                };
                if now < fresh_until {
                    return Ok(cached.token.clone());
                }
            }
            match &state.in_flight {
                Some(f) if self.is_running(&state) => (f.result.clone(), None),
                _ => {
                    if self.backoff.is_running(now)
                        && let Some(error) = &state.last_error
                    {
                        return Err(error.clone());
                    }
                    let Ok(runtime) = runtime else {
                        return Err(TokenError::Aborted {
                            reason: AbortReason::NoRuntime,
                        });
                    };
                    let trigger = match (asker, self.cache.load().is_some()) {
                        (Asker::Monitor, _) => RefreshTrigger::Monitor,
                        (Asker::Caller, true) => RefreshTrigger::Expired,
                        (Asker::Caller, false) if state.invalidated => RefreshTrigger::Invalidated,
                        (Asker::Caller, false) => RefreshTrigger::FirstUse,
                    };
                    let (result, task) = self.prepare(&mut state, trigger, runtime);
                    (result, Some(task))
                }
            }
        };
        if let Some(task) = task {
            task.spawn();
        }
        match result.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Err(TokenError::Aborted {
                reason: AbortReason::RuntimeShutdown,
            })),
            // The task is gone without answering: only its runtime drops it.
            Err(_closed) => Err(TokenError::Aborted {
                reason: AbortReason::RuntimeShutdown,
            }),
        }
    }

    /// Marks a refresh in flight and returns its result channel and its task, to be
    /// spawned once the lock is released.
    fn prepare(
        self: &Arc<Self>,
        state: &mut RefreshState,
        trigger: RefreshTrigger,
        runtime: Handle,
    ) -> (watch::Receiver<Option<Outcome>>, RefreshTask) {
        let (tx, rx) = watch::channel(None);
        let id = self.next_refresh_id.fetch_add(1, Ordering::Relaxed);
        state.in_flight = Some(InFlight {
            id,
            result: rx.clone(),
        });
        self.refreshing.store(true, Ordering::Relaxed);
        let task = RefreshTask {
            shared: Arc::clone(self),
            runtime,
            id,
            epoch: state.epoch,
            trigger,
            credentials: self.credentials.load_full(),
            rejected: state.rejected.clone(),
            result: tx,
            settled: false,
        };
        (rx, task)
    }

    /// Records how refresh `id` ended: installs its token, or counts the failure and starts
    /// the backoff. Runs no user code under the lock.
    fn settle(
        &self,
        id: u64,
        epoch: u64,
        obtained: Result<(AccessToken, Duration), TokenError>,
    ) -> Outcome {
        // Planned before the lock is taken: nothing that could panic runs under it.
        let planned = obtained
            .as_ref()
            .ok()
            .map(|(token, lifetime)| Arc::new(self.schedule.plan(token.clone(), *lifetime)));
        let now = Instant::now();
        let mut state = self.lock_refresh();
        let ours = state.in_flight.as_ref().is_some_and(|f| f.id == id);
        if ours {
            state.in_flight = None;
            self.refreshing.store(false, Ordering::Relaxed);
        }
        match obtained {
            // Installed under the lock, so key rotation cannot interleave.
            Ok((token, _)) => {
                if state.epoch == epoch {
                    self.cache.store(planned);
                    state.invalidated = false;
                    state.rejected = None;
                    state.failures = 0;
                    state.last_error = None;
                    self.backoff.clear();
                }
                Ok(token)
            }
            Err(error) => {
                if ours {
                    state.failures = state.failures.saturating_add(1);
                    state.last_error = Some(error.clone());
                    self.backoff.start(state.failures, now, error.retry_after());
                }
                Err(error)
            }
        }
    }

    /// A token and the lifetime IAM granted it: through the shared cache when there is
    /// one, else straight from IAM. A static API key skips the shared cache: every replica
    /// already holds it, and storing it would only put the key in the store.
    async fn obtain(
        &self,
        credentials: &Credentials,
        trigger: RefreshTrigger,
        rejected: Option<&AccessToken>,
    ) -> Result<(AccessToken, Duration), TokenError> {
        #[cfg(feature = "shared-cache")]
        if let Some(cache) = &self.shared_cache
            && !credentials.is_api_key()
        {
            let refresh = crate::store::Refresh {
                credentials,
                auth_url: &self.iam.auth_url,
                trigger,
                rejected,
                schedule: &self.schedule,
                observers: &self.observers,
            };
            return cache.obtain(refresh, || self.fetch(credentials)).await;
        }
        let _ = (trigger, rejected);
        self.fetch(credentials).await
    }

    /// The IAM exchange; for a static API key, the key itself, with no request.
    async fn fetch(
        &self,
        credentials: &Credentials,
    ) -> Result<(AccessToken, Duration), TokenError> {
        if credentials.is_api_key() {
            return static_token(credentials);
        }
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

/// How long a static API key is held as a token: a year, the longest Cloud.ru issues one
/// for. With it refresh-ahead and the monitor never come due in practice, while everything
/// else (single flight, invalidation after a 401, observers) works as for an IAM token.
const STATIC_KEY_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A static API key as a token: its value is the key, its lifetime [`STATIC_KEY_LIFETIME`].
/// After a 401 the "refresh" lands here again and the same key is resent once.
fn static_token(credentials: &Credentials) -> Result<(AccessToken, Duration), TokenError> {
    let now = Instant::now();
    AccessToken::new(
        credentials.secret().clone(),
        credentials.shared_key_id(),
        now,
        now + STATIC_KEY_LIFETIME,
    )
    .map(|token| (token, STATIC_KEY_LIFETIME))
    // `Credentials::validate` refuses such keys before a manager is built.
    .ok_or_else(|| {
        TokenError::config(
            "api_key",
            format!(
                "the API key `{}` cannot be sent in a header",
                credentials.key_id()
            ),
        )
    })
}
