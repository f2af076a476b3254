//! A shared token cache: one IAM exchange per token lifetime for a whole fleet.
//!
//! Every replica of a service holding its own [`TokenManager`](crate::TokenManager) makes its
//! own IAM requests: N replicas, N times the IAM load. With a [`TokenStore`] shared by the
//! replicas (`RedisStore` across processes, with the `redis` feature; [`InMemoryStore`]
//! within one), a refresh first looks in the store:
//!
//! - a token stored there with its refresh point still ahead is used without IAM;
//! - otherwise the replica takes a short lock in the store, exchanges the key with IAM,
//!   stores the token for everyone and releases the lock;
//! - the replicas that find the lock taken wait for the stored token (polling with a capped
//!   backoff) and never call IAM while the lock lives. If its holder dies, the lock expires
//!   and another replica takes over;
//! - if the store fails (Redis down, a timeout), the refresh goes to IAM directly, with a
//!   warning and a [`TokenEvent::SharedCacheUnavailable`](crate::TokenEvent::SharedCacheUnavailable):
//!   a call never fails because of the store.
//!
//! The store is consulted only inside the refresh task: the hot path
//! ([`TokenManager::cached`](crate::TokenManager::cached)), the refresh-ahead window and the
//! in-process single flight are the same with or without it.
//!
//! # What the store holds
//!
//! Under [`store_key`]`(key_id, auth_url)`, a name that does not contain the key id or the
//! secret, a value sealed with ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the
//! secret, the key id and the auth URL, with the key name as associated data. Reading the
//! store alone yields no usable token, and a value written with another secret, or moved
//! under another name, fails authentication and is ignored (with a warning). The sealed
//! value carries the token's absolute expiry (Unix milliseconds) and lifetime; the store's
//! own expiry (Redis `PTTL`) bounds it too, so replicas with skewed clocks never take an
//! expired token for a fresh one.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use evolution_token::{Credentials, TokenManager};
//! use evolution_token::store::InMemoryStore;
//!
//! // Two managers for the same key (two clients built apart) share one token.
//! let store = Arc::new(InMemoryStore::new());
//! let managers = (0..2)
//!     .map(|_| {
//!         TokenManager::builder(Credentials::new("key-id", "secret"))
//!             .shared_cache(store.clone())
//!             .build()
//!     })
//!     .collect::<Result<Vec<_>, _>>()?;
//! # drop(managers);
//! # Ok::<(), evolution_token::TokenError>(())
//! ```

mod cache;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod seal;

use std::borrow::Cow;
use std::fmt;

use async_trait::async_trait;
use rand::Rng;
use tokio::time::Duration;

pub(crate) use self::cache::{Refresh, SharedCache};
pub use self::memory::InMemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use self::seal::store_key;
use crate::BoxError;
#[cfg(feature = "redis")]
pub use crate::ENV_REDIS_URL;
pub use crate::event::StoreOperation;

/// Limit for one operation on the store. Defaults to 1 second.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// A store shared by the replicas of a service, consulted when a token must be refreshed.
///
/// Keys are short ASCII strings from [`store_key`]; values are opaque sealed bytes. An
/// implementation needs a get, a set with expiry, and an atomic set-if-absent with expiry
/// and a compare-and-delete for the lock: Redis `GET`/`PTTL`, `SET PX`, `SET NX PX` and a
/// Lua script, as `RedisStore` does.
///
/// The manager bounds every call with its timeout and treats any error as "the store is
/// unavailable": it then exchanges the key with IAM itself.
#[async_trait]
pub trait TokenStore: fmt::Debug + Send + Sync + 'static {
    /// The value stored under `key` and how long the store will keep it, or `None`.
    async fn load(&self, key: &str) -> Result<Option<StoredToken>, StoreError>;

    /// Stores `value` under `key` for `ttl` (at least 1 ms), replacing any value there.
    async fn save(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError>;

    /// Takes the refresh lock of `key` for `ttl` if nobody holds it (`SET lock NX PX ttl`):
    /// `Some` with a token that only this holder knows, or `None` if another holds it.
    /// The lock must be atomic across every process sharing the store, and must expire by
    /// itself after `ttl` (its holder may die).
    async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<LockToken>, StoreError>;

    /// Releases the refresh lock of `key` if `lock` still holds it (compare-and-delete):
    /// a holder whose lock expired and was taken by another must not release that one.
    async fn unlock(&self, key: &str, lock: &LockToken) -> Result<(), StoreError>;
}

/// A value read from a [`TokenStore`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredToken {
    /// The sealed bytes, as saved.
    pub value: Vec<u8>,
    /// How long the store keeps the value still, by its own clock (Redis `PTTL`); `None`
    /// if it does not expire it.
    pub ttl: Option<Duration>,
}

impl StoredToken {
    /// A value and its remaining time in the store.
    pub fn new(value: Vec<u8>, ttl: Option<Duration>) -> Self {
        Self { value, ttl }
    }
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field(
                "value",
                &format_args!("[{} sealed bytes]", self.value.len()),
            )
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Proof of holding a refresh lock, given by [`TokenStore::try_lock`] and checked by
/// [`TokenStore::unlock`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockToken(String);

impl LockToken {
    /// A lock token with this value (for stores that make their own).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// A fresh random token (128 bits, hex): what a store should put in the lock.
    pub fn random() -> Self {
        let bits: u128 = rand::rng().random();
        Self(format!("{bits:032x}"))
    }

    /// The token's value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A [`TokenStore`] operation failed: the store is down, unreachable or too slow.
///
/// The message names the operation and never contains a token, a secret or a password.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    message: Cow<'static, str>,
    timeout: bool,
    #[source]
    source: Option<BoxError>,
}

impl StoreError {
    /// An error with this message.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            timeout: false,
            source: None,
        }
    }

    /// An error with this message, caused by `source`.
    pub fn with_source(message: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(message)
        }
    }

    pub(crate) fn timed_out(operation: StoreOperation, timeout: Duration) -> Self {
        Self {
            timeout: true,
            ..Self::new(format!(
                "the token store did not answer `{}` within {timeout:?}",
                operation.as_str()
            ))
        }
    }

    /// Whether the store did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_tokens_are_random() {
        let a = LockToken::random();
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a, LockToken::random());
    }

    #[test]
    fn stored_token_debug_shows_no_bytes() {
        let stored = StoredToken::new(b"sealed-secret-bytes".to_vec(), None);
        let debug = format!("{stored:?}");
        assert!(!debug.contains("sealed-secret"), "{debug}");
        assert!(debug.contains("19 sealed bytes"), "{debug}");
    }
}
