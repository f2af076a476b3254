//! Settings at the edges of what a `Duration` holds, and the shared-cache lock that must
//! outlast its holder's slowest refresh.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use evolution_emulator::{Fault, Route};
use evolution_token::store::{InMemoryStore, LockToken, StoreError, StoredToken, TokenStore};
use evolution_token::{
    DEFAULT_FETCH_TIMEOUT, MAX_FETCH_RETRY_AFTER, MAX_FETCH_TIMEOUT, MAX_SHARED_CACHE_LOCK_TTL,
    TokenError,
};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::{builder, emulator};

#[track_caller]
fn rejects(result: Result<evolution_token::TokenManager, TokenError>, name: &str) {
    match result {
        Err(TokenError::InvalidConfiguration { setting, message }) => {
            assert_eq!(setting, name, "{message}");
            assert!(message.contains(name), "{message}");
            assert!(message.contains("at most"), "{message}");
        }
        other => panic!("expected InvalidConfiguration of {name}, got {other:?}"),
    }
}

/// `Duration::MAX` is refused by `build()` with the setting's name, rather than panicking
/// there (the default lock TTL is computed from the fetch timeout) or in the refresh task.
#[tokio::test]
async fn huge_durations_are_configuration_errors() {
    let emu = emulator().await;
    let store = || Arc::new(InMemoryStore::new()) as Arc<dyn TokenStore>;
    rejects(
        builder(&emu).fetch_timeout(Duration::MAX).build(),
        "fetch_timeout",
    );
    rejects(
        builder(&emu)
            .fetch_timeout(Duration::MAX)
            .shared_cache(store())
            .build(),
        "fetch_timeout",
    );
    rejects(
        builder(&emu)
            .shared_cache(store())
            .shared_cache_lock_ttl(Duration::MAX)
            .build(),
        "shared_cache_lock_ttl",
    );
    rejects(
        builder(&emu)
            .shared_cache(store())
            .shared_cache_lock_ttl(MAX_SHARED_CACHE_LOCK_TTL + Duration::from_millis(1))
            .build(),
        "shared_cache_lock_ttl",
    );
}

/// The largest accepted values work end to end: no `Instant + Duration` overflows.
#[tokio::test(start_paused = true)]
async fn the_largest_accepted_durations_work() {
    let emu = emulator().await;
    let tokens = builder(&emu)
        .fetch_timeout(MAX_FETCH_TIMEOUT)
        .fetch_attempts(10)
        .shared_cache(Arc::new(InMemoryStore::new()))
        .shared_cache_lock_ttl(MAX_SHARED_CACHE_LOCK_TTL)
        .build()
        .unwrap();
    tokens.get_token().await.unwrap();
    let default_ttl = builder(&emu)
        .fetch_timeout(MAX_FETCH_TIMEOUT)
        .fetch_attempts(10)
        .shared_cache(Arc::new(InMemoryStore::new()))
        .build()
        .unwrap();
    default_ttl.get_token().await.unwrap();
    assert_eq!(emu.stats().iam_requests, 2);
}

/// A store called directly with `Duration::MAX` keeps the value "forever" instead of panicking.
#[tokio::test(start_paused = true)]
async fn the_in_memory_store_saturates_huge_ttls() {
    let store = InMemoryStore::new();
    store.save("k", b"v", Duration::MAX).await.unwrap();
    assert!(store.try_lock("k", Duration::MAX).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
    assert!(store.load("k").await.unwrap().is_some());
    assert!(
        store
            .try_lock("k", Duration::from_secs(1))
            .await
            .unwrap()
            .is_none()
    );
}

/// `InMemoryStore` behind a delay per operation: the delay comes before the operation, so
/// a save lands as late as the store timeout allows.
#[derive(Debug)]
struct SlowStore {
    inner: Arc<InMemoryStore>,
    delay: Duration,
}

#[async_trait]
impl TokenStore for SlowStore {
    async fn load(&self, key: &str) -> Result<Option<StoredToken>, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.load(key).await
    }
    async fn save(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.save(key, value, ttl).await
    }
    async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.try_lock(key, ttl).await
    }
    async fn unlock(&self, key: &str, lock: &LockToken) -> Result<(), StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.unlock(key, lock).await
    }
}

/// With every default, the lock holder's slowest refresh (store operations at their
/// timeout, IAM attempts answering 503 with the longest `Retry-After` just before the fetch
/// timeout) still saves its token before its lock expires: a waiting replica never takes
/// the lock over and asks IAM a second time.
#[tokio::test(start_paused = true)]
async fn the_default_lock_ttl_outlasts_the_holders_slowest_refresh() {
    let emu = emulator().await;
    let shared = Arc::new(InMemoryStore::new());
    let slow_op = Duration::from_millis(990); // under the 1 s store timeout
    let slow_answer = DEFAULT_FETCH_TIMEOUT - Duration::from_millis(100);
    let wait = MAX_FETCH_RETRY_AFTER.as_secs().to_string();
    for _ in 1..evolution_token::DEFAULT_FETCH_ATTEMPTS {
        emu.push_fault(
            Route::Iam,
            Fault::status(503)
                .with_header("retry-after", &wait)
                .with_delay(slow_answer),
        );
    }
    emu.push_fault(Route::Iam, Fault::delay(slow_answer));
    let holder = builder(&emu)
        .shared_cache(Arc::new(SlowStore {
            inner: shared.clone(),
            delay: slow_op,
        }))
        .build()
        .unwrap();
    let waiter = builder(&emu).shared_cache(shared).build().unwrap();

    let started = Instant::now();
    let holding = tokio::spawn(async move { holder.get_token().await });
    tokio::time::sleep(Duration::from_millis(2500)).await; // the holder has the lock
    let waited = waiter.get_token().await.unwrap();
    let held = holding.await.unwrap().unwrap();
    assert!(
        held.secret().expose_secret() == waited.secret().expose_secret(),
        "the waiter fetched a token of its own"
    );
    assert_eq!(
        emu.stats().iam_requests,
        evolution_token::DEFAULT_FETCH_ATTEMPTS as u64
    );
    // It was the slowest refresh indeed: three slow answers and two waits.
    assert!(started.elapsed() > 3 * slow_answer + 2 * MAX_FETCH_RETRY_AFTER);
}
