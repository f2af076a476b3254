//! The shared-cache protocol, run inside a manager's refresh task in place of the bare
//! IAM exchange: look in the store; else lock, exchange, save, unlock; else wait for the
//! lock holder's token. Any store failure falls back to the bare IAM exchange.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use rand::Rng;
use secrecy::ExposeSecret;
use tokio::time::{Duration, Instant};

use super::seal::Sealer;
use super::{LockToken, StoreError, StoreOperation, TokenStore};
use crate::event::Observers;
use crate::manager::schedule::Schedule;
use crate::{AccessToken, Credentials, RefreshTrigger, TokenError, TokenEvent};

/// First pause of a replica waiting for the lock holder's token; it doubles up to the cap.
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_CAP: Duration = Duration::from_millis(250);

/// A token and the lifetime IAM granted it: what a refresh produces.
pub(crate) type Obtained = Result<(AccessToken, Duration), TokenError>;

/// Unix time in milliseconds, `None` if the clock is before 1970.
pub(crate) type WallClock = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// A manager's link to the shared store.
pub(crate) struct SharedCache {
    store: Arc<dyn TokenStore>,
    lock_ttl: Duration,
    timeout: Duration,
    clock: WallClock,
}

/// What the protocol needs from the refresh it runs in.
pub(crate) struct Refresh<'a> {
    pub(crate) credentials: &'a Credentials,
    pub(crate) auth_url: &'a str,
    pub(crate) trigger: RefreshTrigger,
    /// The token the API rejected (a 401): a stored token with the same value is stale
    /// whatever its expiry says, and is never taken back.
    pub(crate) rejected: Option<&'a AccessToken>,
    pub(crate) schedule: &'a Schedule,
    pub(crate) observers: &'a Observers,
}

impl SharedCache {
    pub(crate) fn new(store: Arc<dyn TokenStore>, lock_ttl: Duration, timeout: Duration) -> Self {
        Self {
            store,
            lock_ttl,
            timeout,
            clock: Arc::new(system_clock),
        }
    }

    #[cfg(test)]
    fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// A token for `refresh`: from the store, or from `fetch` (the IAM exchange), called at
    /// most once and only while this replica holds the lock, or when the store fails.
    pub(crate) async fn obtain<F>(
        &self,
        refresh: Refresh<'_>,
        fetch: impl FnOnce() -> F,
    ) -> Obtained
    where
        F: Future<Output = Obtained>,
    {
        let credentials = refresh.credentials;
        let sealer = Sealer::new(credentials.secret(), credentials.key_id(), refresh.auth_url);
        let started = Instant::now();
        match self.look(&refresh, &sealer).await {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(error) => {
                return self
                    .bypass(&refresh, StoreOperation::Load, &error, fetch)
                    .await;
            }
        }
        // Waiting is bounded: a holder gets `lock_ttl`, and when it dies the next replica
        // takes over; twice that without a token means the store misbehaves.
        let give_up = started + self.lock_ttl.saturating_mul(2);
        let mut pause = POLL_FIRST;
        loop {
            let locked = self
                .call(
                    StoreOperation::Lock,
                    self.store.try_lock(sealer.key(), self.lock_ttl),
                )
                .await;
            match locked {
                Ok(Some(lock)) => return self.hold(&refresh, &sealer, lock, fetch).await,
                Ok(None) => {}
                Err(error) => {
                    return self
                        .bypass(&refresh, StoreOperation::Lock, &error, fetch)
                        .await;
                }
            }
            if Instant::now() >= give_up {
                let error = StoreError::new(format!(
                    "the refresh lock stayed taken for {:?} with no token stored",
                    started.elapsed()
                ));
                return self
                    .bypass(&refresh, StoreOperation::Wait, &error, fetch)
                    .await;
            }
            let jittered = pause.mul_f64(rand::rng().random_range(0.5..=1.0));
            tokio::time::sleep(jittered).await;
            pause = pause.saturating_mul(2).min(POLL_CAP);
            match self.look(&refresh, &sealer).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(error) => {
                    return self
                        .bypass(&refresh, StoreOperation::Load, &error, fetch)
                        .await;
                }
            }
        }
    }

    /// This replica holds the lock: exchange the key, store the token, release the lock.
    async fn hold<F>(
        &self,
        refresh: &Refresh<'_>,
        sealer: &Sealer,
        lock: LockToken,
        fetch: impl FnOnce() -> F,
    ) -> Obtained
    where
        F: Future<Output = Obtained>,
    {
        // Another replica may have stored its token between our look and our lock.
        let found = match self.look(refresh, sealer).await {
            Ok(found) => found,
            Err(error) => {
                self.unavailable(refresh, StoreOperation::Load, &error);
                None
            }
        };
        let obtained = match found {
            Some(found) => Ok(found),
            None => {
                let fetched = fetch().await;
                if let Ok((token, lifetime)) = &fetched {
                    self.save(refresh, sealer, token, *lifetime).await;
                }
                fetched
            }
        };
        // Saved first, unlocked second: a waiter never finds the lock free and no token.
        // If this task dies before here, the lock expires by itself.
        let unlocked = self
            .call(
                StoreOperation::Unlock,
                self.store.unlock(sealer.key(), &lock),
            )
            .await;
        if let Err(error) = unlocked {
            self.unavailable(refresh, StoreOperation::Unlock, &error);
        }
        obtained
    }

    /// The stored token if it is fresh for this manager: its refresh point, by the lifetime
    /// IAM granted and this manager's schedule, still ahead. `None` when absent, stale,
    /// sealed with another secret, or the rejected token.
    async fn look(
        &self,
        refresh: &Refresh<'_>,
        sealer: &Sealer,
    ) -> Result<Option<(AccessToken, Duration)>, StoreError> {
        let key_id = refresh.credentials.shared_key_id();
        let loaded = self
            .call(StoreOperation::Load, self.store.load(sealer.key()))
            .await?;
        let Some(stored) = loaded else {
            return Ok(None);
        };
        let Some(opened) = sealer.open(&stored.value) else {
            tracing::warn!(
                key_id = &*key_id,
                "the shared token cache holds a value this key's secret does not open (written with another secret or by another version, or tampered with): ignoring it"
            );
            return Ok(None);
        };
        let rejected = refresh.rejected.is_some_and(|rejected| {
            rejected.secret().expose_secret() == opened.token.expose_secret()
        });
        if rejected || opened.lifetime.is_zero() {
            return Ok(None);
        }
        // Both clocks bound the remaining life: the store's (the same for every replica)
        // and the writer's wall clock (so an old value stored again is still seen as old).
        let by_wall_clock = (self.clock)()
            .map(|now| Duration::from_millis(opened.expires_at_ms.saturating_sub(now)));
        let remaining = match (stored.ttl, by_wall_clock) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return Ok(None),
        }
        .min(opened.lifetime);
        if remaining <= refresh.schedule.refresh_lead(opened.lifetime) {
            return Ok(None);
        }
        let now = Instant::now();
        let expires_at = now + remaining;
        let fetched_at = expires_at.checked_sub(opened.lifetime).unwrap_or(now);
        let Some(token) = AccessToken::new(opened.token, key_id.clone(), fetched_at, expires_at)
        else {
            return Ok(None);
        };
        tracing::debug!(
            key_id = &*key_id,
            trigger = refresh.trigger.as_str(),
            expires_in = ?remaining,
            "token taken from the shared cache"
        );
        refresh.observers.emit(TokenEvent::SharedCacheHit {
            key_id,
            trigger: refresh.trigger,
            expires_in: remaining,
        });
        Ok(Some((token, opened.lifetime)))
    }

    async fn save(
        &self,
        refresh: &Refresh<'_>,
        sealer: &Sealer,
        token: &AccessToken,
        lifetime: Duration,
    ) {
        let ttl = token.expires_in();
        let Some(now_ms) = (self.clock)() else {
            return;
        };
        if ttl < Duration::from_millis(1) {
            return;
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let value = sealer.seal(token.secret(), now_ms.saturating_add(ttl_ms), lifetime);
        let saved = self
            .call(
                StoreOperation::Save,
                self.store.save(sealer.key(), &value, ttl),
            )
            .await;
        if let Err(error) = saved {
            self.unavailable(refresh, StoreOperation::Save, &error);
        }
    }

    /// The store failed: this refresh goes to IAM directly.
    async fn bypass<F>(
        &self,
        refresh: &Refresh<'_>,
        operation: StoreOperation,
        error: &StoreError,
        fetch: impl FnOnce() -> F,
    ) -> Obtained
    where
        F: Future<Output = Obtained>,
    {
        self.unavailable(refresh, operation, error);
        fetch().await
    }

    fn unavailable(&self, refresh: &Refresh<'_>, operation: StoreOperation, error: &StoreError) {
        let key_id = refresh.credentials.shared_key_id();
        tracing::warn!(
            key_id = &*key_id,
            operation = operation.as_str(),
            %error,
            "shared token cache unavailable: this refresh goes on without it"
        );
        refresh
            .observers
            .emit(TokenEvent::SharedCacheUnavailable { key_id, operation });
    }

    /// One store operation, bounded by the timeout.
    async fn call<T>(
        &self,
        operation: StoreOperation,
        future: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, future)
            .await
            .unwrap_or_else(|_elapsed| Err(StoreError::timed_out(operation, self.timeout)))
    }
}

/// The crate's one wall-clock read. A token's expiry must mean the same in every process
/// sharing the store, which tokio's monotonic clock cannot give; it only ever shortens
/// what the store's own expiry allows.
fn system_clock() -> Option<u64> {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    let since_epoch = now.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_millis()).ok()
}

impl fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCache")
            .field("store", &self.store)
            .field("lock_ttl", &self.lock_ttl)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use secrecy::SecretString;

    use super::*;
    use crate::store::InMemoryStore;

    const URL: &str = "https://iam.example/token";

    struct Fixture {
        store: Arc<InMemoryStore>,
        wall_ms: Arc<AtomicU64>,
        fetches: Arc<AtomicUsize>,
        credentials: Credentials,
        schedule: Schedule,
        observers: Observers,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                store: Arc::new(InMemoryStore::new()),
                wall_ms: Arc::new(AtomicU64::new(1_700_000_000_000)),
                fetches: Arc::new(AtomicUsize::new(0)),
                credentials: Credentials::new("key-id", "secret"),
                schedule: Schedule {
                    buffer: Duration::from_secs(30),
                    ahead: Duration::from_secs(300),
                },
                observers: Observers::default(),
            }
        }

        fn cache(&self) -> SharedCache {
            let wall_ms = self.wall_ms.clone();
            SharedCache::new(
                self.store.clone(),
                Duration::from_secs(5),
                Duration::from_secs(1),
            )
            .with_clock(Arc::new(move || Some(wall_ms.load(Ordering::Relaxed))))
        }

        async fn obtain(&self, cache: &SharedCache, trigger: RefreshTrigger) -> AccessToken {
            self.obtain_rejecting(cache, trigger, None).await
        }

        async fn obtain_rejecting(
            &self,
            cache: &SharedCache,
            trigger: RefreshTrigger,
            rejected: Option<&AccessToken>,
        ) -> AccessToken {
            let refresh = Refresh {
                credentials: &self.credentials,
                auth_url: URL,
                trigger,
                rejected,
                schedule: &self.schedule,
                observers: &self.observers,
            };
            let fetches = self.fetches.clone();
            let fetch = || async move {
                let n = fetches.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let lifetime = Duration::from_secs(3600);
                let token = SecretString::from(format!("token-{n}"));
                Ok((
                    AccessToken::new(token, "key-id".into(), now, now + lifetime).unwrap(),
                    lifetime,
                ))
            };
            cache.obtain(refresh, fetch).await.unwrap().0
        }

        fn advance_wall_clock(&self, by: Duration) {
            let ms = u64::try_from(by.as_millis()).unwrap();
            self.wall_ms.fetch_add(ms, Ordering::Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_stored_token_is_taken_and_a_stale_one_is_replaced() {
        let fixture = Fixture::new();
        let (a, b) = (fixture.cache(), fixture.cache());
        let first = fixture.obtain(&a, RefreshTrigger::FirstUse).await;
        let shared = fixture.obtain(&b, RefreshTrigger::FirstUse).await;
        assert_eq!(fixture.fetches.load(Ordering::Relaxed), 1);
        assert_eq!(
            first.secret().expose_secret(),
            shared.secret().expose_secret()
        );
        assert_eq!(shared.expires_in(), Duration::from_secs(3600));

        // Inside the refresh-ahead window (300 s before expiry, from the schedule), the
        // stored token is stale: the next refresh goes to IAM.
        let stale_in = Duration::from_secs(3600 - 300);
        tokio::time::advance(stale_in).await;
        fixture.advance_wall_clock(stale_in);
        let next = fixture.obtain(&b, RefreshTrigger::Ahead).await;
        assert_eq!(fixture.fetches.load(Ordering::Relaxed), 2);
        assert_ne!(
            next.secret().expose_secret(),
            first.secret().expose_secret()
        );
    }

    /// An old value stored again with a fresh store expiry (a replay by someone with write
    /// access to the store) is still seen as old: the wall-clock expiry is sealed in it.
    #[tokio::test(start_paused = true)]
    async fn a_replayed_old_value_is_not_taken_for_fresh() {
        let fixture = Fixture::new();
        let cache = fixture.cache();
        fixture.obtain(&cache, RefreshTrigger::FirstUse).await;
        let key = crate::store::store_key("key-id", URL);
        let old = fixture.store.load(&key).await.unwrap().unwrap();

        let hour = Duration::from_secs(3600);
        tokio::time::advance(hour).await;
        fixture.advance_wall_clock(hour);
        fixture.store.save(&key, &old.value, hour).await.unwrap();
        fixture
            .obtain(&fixture.cache(), RefreshTrigger::FirstUse)
            .await;
        assert_eq!(fixture.fetches.load(Ordering::Relaxed), 2);
    }

    /// A replica whose wall clock is ahead sees stored tokens as older and refreshes a bit
    /// early; one whose clock is behind is bounded by the store's expiry.
    #[tokio::test(start_paused = true)]
    async fn wall_clock_skew_never_makes_a_stale_token_fresh() {
        let fixture = Fixture::new();
        fixture
            .obtain(&fixture.cache(), RefreshTrigger::FirstUse)
            .await;
        // A replica 10 minutes behind, an hour later: the store says the token expired.
        let hour = Duration::from_secs(3600);
        tokio::time::advance(hour - Duration::from_secs(100)).await;
        fixture.advance_wall_clock(hour - Duration::from_secs(700));
        fixture
            .obtain(&fixture.cache(), RefreshTrigger::Expired)
            .await;
        assert_eq!(fixture.fetches.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_invalidation_the_same_stored_token_is_not_taken_back() {
        let fixture = Fixture::new();
        let cache = fixture.cache();
        let first = fixture.obtain(&cache, RefreshTrigger::FirstUse).await;
        let other = fixture.cache();
        assert!(
            fixture
                .obtain(&other, RefreshTrigger::FirstUse)
                .await
                .secret()
                .expose_secret()
                == first.secret().expose_secret()
        );

        // `other` got a 401 for it: it fetches a new one and stores it...
        let second = fixture
            .obtain_rejecting(&other, RefreshTrigger::Invalidated, Some(&first))
            .await;
        assert_eq!(fixture.fetches.load(Ordering::Relaxed), 2);
        assert_ne!(
            second.secret().expose_secret(),
            first.secret().expose_secret()
        );
        // ...which the first manager, invalidated too, takes without IAM.
        let taken = fixture
            .obtain_rejecting(&cache, RefreshTrigger::Invalidated, Some(&first))
            .await;
        assert_eq!(fixture.fetches.load(Ordering::Relaxed), 2);
        assert_eq!(
            taken.secret().expose_secret(),
            second.secret().expose_secret()
        );
    }

    /// The rejected token is recognised by its value, whichever replica stored it and
    /// whatever the store says of its expiry.
    #[tokio::test(start_paused = true)]
    async fn a_rejected_token_is_skipped_by_value_until_replaced() {
        let fixture = Fixture::new();
        let cache = fixture.cache();
        let rejected = fixture.obtain(&cache, RefreshTrigger::FirstUse).await;
        for _ in 0..2 {
            let next = fixture
                .obtain_rejecting(
                    &fixture.cache(),
                    RefreshTrigger::Invalidated,
                    Some(&rejected),
                )
                .await;
            assert_ne!(
                next.secret().expose_secret(),
                rejected.secret().expose_secret()
            );
        }
        // The first refresh went to IAM and stored its token; the second took that one.
        assert_eq!(fixture.fetches.load(Ordering::Relaxed), 2);
    }
}
