//! Events for observers (metrics, logs) of the token lifecycle.

use std::fmt;
use std::sync::Arc;

use tokio::time::Duration;

use crate::TokenErrorKind;

/// Why a refresh started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshTrigger {
    /// No token had been fetched yet.
    FirstUse,
    /// A caller found the token inside the refresh-ahead window; it kept using the cached token.
    Ahead,
    /// The token was inside the refresh buffer or expired; callers waited.
    Expired,
    /// The token had been invalidated (a 401 from the API, or by hand).
    Invalidated,
    /// The background monitor refreshed it with no caller involved.
    Monitor,
}

impl RefreshTrigger {
    /// A short snake_case name, stable for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstUse => "first_use",
            Self::Ahead => "ahead",
            Self::Expired => "expired",
            Self::Invalidated => "invalidated",
            Self::Monitor => "monitor",
        }
    }
}

/// What the manager was doing with the shared cache, in
/// [`TokenEvent::SharedCacheUnavailable`](crate::TokenEvent::SharedCacheUnavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreOperation {
    /// Reading the stored token.
    Load,
    /// Taking the refresh lock.
    Lock,
    /// Storing a new token.
    Save,
    /// Releasing the refresh lock.
    Unlock,
    /// Waiting for another replica's token: the lock stayed taken for longer than twice
    /// its lifetime.
    Wait,
}

impl StoreOperation {
    /// A short snake_case name, stable for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Lock => "lock",
            Self::Save => "save",
            Self::Unlock => "unlock",
            Self::Wait => "wait",
        }
    }
}

/// Something that happened to a [`TokenManager`](crate::TokenManager)'s token.
///
/// Events carry the key id (not secret) and never a secret or a token value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TokenEvent {
    /// A refresh started: an IAM exchange, preceded by a look in the shared cache when
    /// one is configured.
    RefreshStarted {
        /// The key id being exchanged.
        key_id: Arc<str>,
        /// Why.
        trigger: RefreshTrigger,
    },
    /// A new token was obtained: from IAM, or from the shared cache (then
    /// [`SharedCacheHit`](Self::SharedCacheHit) came just before).
    RefreshSucceeded {
        /// The key id exchanged.
        key_id: Arc<str>,
        /// Why the refresh ran.
        trigger: RefreshTrigger,
        /// How long it took, retries included.
        duration: Duration,
        /// The lifetime IAM granted (after clamping).
        lifetime: Duration,
    },
    /// The IAM exchange failed (after its bounded retries).
    RefreshFailed {
        /// The key id exchanged.
        key_id: Arc<str>,
        /// Why the refresh ran.
        trigger: RefreshTrigger,
        /// How long it took, retries included.
        duration: Duration,
        /// What went wrong.
        error: TokenErrorKind,
    },
    /// The cached token was dropped (a 401 from the API, `invalidate`, or key rotation).
    Invalidated {
        /// The key id of the dropped token.
        key_id: Arc<str>,
    },
    /// A refresh failed but the cached token had not expired yet, so it was served.
    StaleServed {
        /// The key id of the served token.
        key_id: Arc<str>,
        /// Its remaining lifetime.
        expires_in: Duration,
    },
    /// A refresh took the token another replica had stored in the shared cache, without
    /// an IAM exchange. [`RefreshSucceeded`](Self::RefreshSucceeded) follows.
    SharedCacheHit {
        /// The key id of the token.
        key_id: Arc<str>,
        /// Why the refresh ran.
        trigger: RefreshTrigger,
        /// The token's remaining lifetime.
        expires_in: Duration,
    },
    /// The shared cache failed (down, unreachable, too slow): the refresh went to IAM
    /// directly. Logged as a warning too.
    SharedCacheUnavailable {
        /// The key id being refreshed.
        key_id: Arc<str>,
        /// What failed.
        operation: StoreOperation,
    },
}

/// Receives [`TokenEvent`]s. Called inline: keep it cheap and never block.
///
/// Any `Fn(&TokenEvent) + Send + Sync` is an observer:
///
/// ```
/// use evolution_token::{Credentials, TokenEvent, TokenManager};
///
/// let tokens = TokenManager::builder(Credentials::new("id", "secret"))
///     .observer(|event: &TokenEvent| eprintln!("{event:?}"))
///     .build()
///     .unwrap();
/// # drop(tokens);
/// ```
pub trait TokenObserver: Send + Sync + 'static {
    /// Called for every event.
    fn on_event(&self, event: &TokenEvent);
}

impl<F> TokenObserver for F
where
    F: Fn(&TokenEvent) + Send + Sync + 'static,
{
    fn on_event(&self, event: &TokenEvent) {
        self(event)
    }
}

/// The observers of one manager.
#[derive(Clone, Default)]
pub(crate) struct Observers(Vec<Arc<dyn TokenObserver>>);

impl Observers {
    pub(crate) fn push(&mut self, observer: Arc<dyn TokenObserver>) {
        self.0.push(observer);
    }

    pub(crate) fn emit(&self, event: TokenEvent) {
        for observer in &self.0 {
            observer.on_event(&event);
        }
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} observer(s)", self.0.len())
    }
}
