//! [`InMemoryStore`]: the shared cache within one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::time::{Duration, Instant};

use super::{LockToken, StoreError, StoredToken, TokenStore};

/// A [`TokenStore`] in this process's memory, shared through an `Arc` by several
/// [`TokenManager`](crate::TokenManager)s for the same key (clients built apart, tenants
/// of one service), so that they make one IAM request between them.
///
/// Expiry runs on tokio's clock, so tests with `tokio::time::pause()` hold. It holds
/// exactly what `RedisStore` would: sealed values, never a token in clear.
///
/// ```
/// use std::sync::Arc;
/// use evolution_token::{Credentials, TokenManager};
/// use evolution_token::store::InMemoryStore;
///
/// let store = Arc::new(InMemoryStore::new());
/// let tokens = TokenManager::builder(Credentials::new("key-id", "secret"))
///     .shared_cache(store)
///     .build()?;
/// # drop(tokens);
/// # Ok::<(), evolution_token::TokenError>(())
/// ```
#[derive(Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    values: HashMap<String, Expiring<Vec<u8>>>,
    locks: HashMap<String, Expiring<LockToken>>,
}

struct Expiring<T> {
    item: T,
    until: Instant,
}

impl<T> Expiring<T> {
    fn new(item: T, ttl: Duration) -> Self {
        Self {
            item,
            until: saturating_add(Instant::now(), ttl),
        }
    }

    fn live(&self, now: Instant) -> bool {
        now < self.until
    }
}

/// `now + ttl`, or a point some 30 years ahead (tokio's own "far future") when `ttl` is
/// longer than an `Instant` can hold: for a store, "forever".
fn saturating_add(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(86400 * 365 * 30))
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many values it holds (expired ones included until next touched).
    pub fn len(&self) -> usize {
        self.lock().values.len()
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Held for a map operation only, never across an await: poisoning needs a panic
        // inside one, and the maps are still consistent then.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl TokenStore for InMemoryStore {
    async fn load(&self, key: &str) -> Result<Option<StoredToken>, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        match state.values.get(key) {
            Some(value) if value.live(now) => Ok(Some(StoredToken::new(
                value.item.clone(),
                Some(value.until - now),
            ))),
            Some(_) => {
                state.values.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn save(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.lock()
            .values
            .insert(key.to_owned(), Expiring::new(value.to_vec(), ttl));
        Ok(())
    }

    async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        if state.locks.get(key).is_some_and(|lock| lock.live(now)) {
            return Ok(None);
        }
        let token = LockToken::random();
        state
            .locks
            .insert(key.to_owned(), Expiring::new(token.clone(), ttl));
        Ok(Some(token))
    }

    async fn unlock(&self, key: &str, lock: &LockToken) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.locks.get(key).is_some_and(|held| held.item == *lock) {
            state.locks.remove(key);
        }
        Ok(())
    }
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("InMemoryStore")
            .field("values", &state.values.len())
            .field("locks", &state.locks.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn values_expire() {
        let store = InMemoryStore::new();
        store
            .save("k", b"v", Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        let stored = store.load("k").await.unwrap().unwrap();
        assert_eq!(stored.value, b"v");
        assert_eq!(stored.ttl, Some(Duration::from_secs(6)));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(store.load("k").await.unwrap().is_none());
        assert!(store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn lock_is_exclusive_expires_and_is_released_only_by_its_holder() {
        let store = InMemoryStore::new();
        let ttl = Duration::from_secs(5);
        let first = store.try_lock("k", ttl).await.unwrap().unwrap();
        assert!(store.try_lock("k", ttl).await.unwrap().is_none());
        assert!(store.try_lock("other", ttl).await.unwrap().is_some());

        // The holder died: the lock expires and another takes it.
        tokio::time::advance(ttl).await;
        let second = store.try_lock("k", ttl).await.unwrap().unwrap();
        // The first holder's late unlock does not release the second's lock.
        store.unlock("k", &first).await.unwrap();
        assert!(store.try_lock("k", ttl).await.unwrap().is_none());
        store.unlock("k", &second).await.unwrap();
        assert!(store.try_lock("k", ttl).await.unwrap().is_some());
    }
}
