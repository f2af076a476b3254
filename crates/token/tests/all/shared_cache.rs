//! The shared token cache's protocol, against `InMemoryStore` and stores that fail.
//! `tests/redis.rs` runs the same scenarios against a real redis-server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use evolution_testkit::Capture;
use evolution_token::store::{InMemoryStore, LockToken, StoreError, StoredToken, TokenStore};
use evolution_token::{Credentials, StoreOperation, TokenErrorKind, TokenManager};
use futures_util::future::join_all;
use secrecy::ExposeSecret;
use tokio::time::Instant;

#[path = "../scenarios/shared_cache.rs"]
mod scenarios;

use scenarios::{Events, Fleet, SECRET, same_value};

fn one_store() -> impl Fn() -> Arc<dyn TokenStore> {
    let store: Arc<dyn TokenStore> = Arc::new(InMemoryStore::new());
    move || store.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_fleet_makes_one_iam_request() {
    scenarios::cold_fleet_makes_one_iam_request(&one_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lock_holder_is_replaced_within_the_lock_ttl() {
    scenarios::dead_lock_holder_is_replaced_within_the_lock_ttl(&one_store()).await;
}

#[tokio::test(start_paused = true)]
async fn a_rejected_token_is_never_taken_back() {
    scenarios::a_rejected_token_is_never_taken_back(&one_store()).await;
}

#[tokio::test(start_paused = true)]
async fn stored_values_are_sealed() {
    scenarios::stored_values_are_sealed(&one_store()).await;
}

/// A store whose every operation fails, as Redis does when it is down.
#[derive(Debug)]
struct FailingStore;

#[async_trait]
impl TokenStore for FailingStore {
    async fn load(&self, _key: &str) -> Result<Option<StoredToken>, StoreError> {
        Err(StoreError::new("connection refused"))
    }
    async fn save(&self, _key: &str, _value: &[u8], _ttl: Duration) -> Result<(), StoreError> {
        Err(StoreError::new("connection refused"))
    }
    async fn try_lock(&self, _key: &str, _ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        Err(StoreError::new("connection refused"))
    }
    async fn unlock(&self, _key: &str, _lock: &LockToken) -> Result<(), StoreError> {
        Err(StoreError::new("connection refused"))
    }
}

/// A store that never answers.
#[derive(Debug)]
struct HangingStore;

#[async_trait]
impl TokenStore for HangingStore {
    async fn load(&self, _key: &str) -> Result<Option<StoredToken>, StoreError> {
        std::future::pending().await
    }
    async fn save(&self, _key: &str, _value: &[u8], _ttl: Duration) -> Result<(), StoreError> {
        std::future::pending().await
    }
    async fn try_lock(&self, _key: &str, _ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        std::future::pending().await
    }
    async fn unlock(&self, _key: &str, _lock: &LockToken) -> Result<(), StoreError> {
        std::future::pending().await
    }
}

/// A store that panics, as a buggy implementation might.
#[derive(Debug)]
struct PanickingStore;

#[async_trait]
impl TokenStore for PanickingStore {
    async fn load(&self, _key: &str) -> Result<Option<StoredToken>, StoreError> {
        panic!("store bug (on purpose)")
    }
    async fn save(&self, _key: &str, _value: &[u8], _ttl: Duration) -> Result<(), StoreError> {
        panic!("store bug (on purpose)")
    }
    async fn try_lock(&self, _key: &str, _ttl: Duration) -> Result<Option<LockToken>, StoreError> {
        panic!("store bug (on purpose)")
    }
    async fn unlock(&self, _key: &str, _lock: &LockToken) -> Result<(), StoreError> {
        panic!("store bug (on purpose)")
    }
}

/// A panicking store fails the refresh with an error that says so, and leaves no refresh
/// in flight: each later refresh (after the backoff) runs again.
#[tokio::test(start_paused = true)]
async fn a_panicking_store_does_not_wedge_the_manager() {
    let fleet = Fleet::start().await;
    let tokens = fleet.replica(Arc::new(PanickingStore)).build().unwrap();
    for _ in 0..3 {
        let error = tokens.get_token().await.unwrap_err();
        assert_eq!(error.kind(), TokenErrorKind::Aborted, "{error:?}");
        assert!(error.to_string().contains("panicked"), "{error}");
        assert!(
            !tokens.info().refresh_in_flight,
            "a dead refresh is in flight"
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    assert_eq!(fleet.iam_requests(), 0);
}

/// The store is down: every replica gets its token from IAM, no call fails, and each
/// refresh says so (warning and event).
#[tokio::test(start_paused = true)]
async fn failing_store_never_fails_a_call() {
    let fleet = Fleet::start().await;
    let events = Events::default();
    let replicas: Vec<_> = (0..3)
        .map(|_| {
            events
                .observe(fleet.replica(Arc::new(FailingStore)))
                .build()
                .unwrap()
        })
        .collect();
    for replica in &replicas {
        for _ in 0..10 {
            replica.get_token().await.unwrap();
        }
    }
    assert_eq!(fleet.iam_requests(), 3);
    assert_eq!(events.unavailable(), vec![StoreOperation::Load; 3]);

    // Refreshes keep working without the store, and keep reporting it.
    replicas[0].invalidate();
    replicas[0].get_token().await.unwrap();
    assert_eq!(fleet.iam_requests(), 4);
    assert_eq!(events.unavailable().len(), 4);
}

/// A store that hangs costs a refresh its timeout, then IAM answers.
#[tokio::test(start_paused = true)]
async fn hanging_store_times_out_to_iam() {
    let fleet = Fleet::start().await;
    let events = Events::default();
    let tokens = events
        .observe(fleet.replica(Arc::new(HangingStore)))
        .shared_cache_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    tokens.get_token().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(fleet.iam_requests(), 1);
    assert_eq!(events.unavailable(), vec![StoreOperation::Load]);
}

#[test]
fn shared_cache_settings_are_validated() {
    let builder = || {
        TokenManager::builder(Credentials::new("k", "s"))
            .shared_cache(Arc::new(InMemoryStore::new()))
    };
    let error = builder()
        .shared_cache_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains("shared_cache_timeout"),
        "{error}"
    );
    let error = builder()
        .shared_cache_lock_ttl(Duration::from_micros(10))
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains("shared_cache_lock_ttl"),
        "{error}"
    );
    let debug = format!("{:?}", builder().build().unwrap());
    assert!(debug.contains("InMemoryStore"), "{debug}");
}

/// A token revoked at IAM (a 401 for it): the first replica to see it fetches a new one,
/// the others take that one from the store instead of the revoked one.
#[tokio::test(start_paused = true)]
async fn revoked_shared_token_is_replaced_once_for_the_fleet() {
    let fleet = Fleet::start().await;
    let store = one_store();
    let (a, b) = (
        fleet.replica(store()).build().unwrap(),
        fleet.replica(store()).build().unwrap(),
    );
    let old = a.get_token().await.unwrap();
    assert!(same_value(&old, &b.get_token().await.unwrap()));
    assert_eq!(fleet.iam_requests(), 1);

    fleet.emu.revoke_token(old.secret().expose_secret());
    assert!(a.invalidate_if_current(&old));
    let new = a.get_token().await.unwrap();
    assert!(!same_value(&new, &old));
    assert_eq!(fleet.iam_requests(), 2);

    let b_old = b.get_token().await.unwrap();
    assert!(b.invalidate_if_current(&b_old));
    assert!(same_value(&b.get_token().await.unwrap(), &new));
    assert_eq!(fleet.iam_requests(), 2);
}

/// Key rotation with a shared cache: the new key's token is fetched and stored under
/// the new key's name; the old key's stored token is never served for it.
#[tokio::test(start_paused = true)]
async fn key_rotation_switches_the_stored_token() {
    let fleet = Fleet::start().await;
    fleet.emu.add_key("rotated-key", "rotated-secret");
    let store = one_store();
    let (a, b) = (
        fleet.replica(store()).build().unwrap(),
        fleet.replica(store()).build().unwrap(),
    );
    a.get_token().await.unwrap();
    a.set_credentials(Credentials::new("rotated-key", "rotated-secret"))
        .unwrap();
    assert_eq!(a.get_token().await.unwrap().key_id(), "rotated-key");
    b.set_credentials(Credentials::new("rotated-key", "rotated-secret"))
        .unwrap();
    assert_eq!(b.get_token().await.unwrap().key_id(), "rotated-key");
    let stats = fleet.emu.stats();
    assert_eq!(stats.iam_requests_for(&fleet.key_id), 1);
    assert_eq!(stats.iam_requests_for("rotated-key"), 1);
}

/// In steady traffic, 16 replicas on one store make about one IAM request per token
/// lifetime between them; on their own, one each.
#[tokio::test(start_paused = true)]
async fn fleet_of_16_makes_one_iam_request_per_token_lifetime() {
    let every = Duration::from_secs(10);
    let shared = scenarios::fleet_iam_requests_per_hour(16, 3, every, true).await;
    let alone = scenarios::fleet_iam_requests_per_hour(16, 3, every, false).await;
    println!("IAM requests per hour, 16 replicas: shared cache {shared:?}, without {alone:?}");
    // Hour 1: the cold start and the first refresh (55 to 57.75 min into the token's life).
    assert_eq!(shared[0], 2);
    assert_eq!(alone[0], 32);
    // Then a refresh every 55 min or so for the fleet, instead of one per replica.
    assert!(shared[1..].iter().all(|&n| n <= 2), "{shared:?}");
    assert!(shared[1..].iter().sum::<u64>() >= 2, "{shared:?}");
    assert!(alone[1..].iter().all(|&n| n >= 16), "{alone:?}");
}

/// Hits, saves, store failures and rejected values log no secret and no token.
#[tokio::test(start_paused = true)]
async fn no_secret_or_token_in_shared_cache_logs() {
    // Scoped to this test, heard on every thread (see `Capture::set_default`).
    let capture = Capture::default();
    let _guard = capture.set_default();

    let fleet = Fleet::start().await;
    // Tests on other threads (without this subscriber) may have met these log lines
    // first, and tracing caches per line whether anyone listens: ask again.
    tracing::callsite::rebuild_interest_cache();
    let store = one_store();
    let replicas: Vec<_> = (0..3)
        .map(|_| fleet.replica(store()).build().unwrap())
        .collect();
    join_all(replicas.iter().map(|r| r.get_token())).await;
    fleet.emu.add_key(&fleet.key_id, "rotated-secret");
    TokenManager::builder(Credentials::new(&fleet.key_id, "rotated-secret"))
        .auth_url(fleet.emu.auth_url())
        .shared_cache(store())
        .build()
        .unwrap()
        .get_token()
        .await
        .unwrap();
    fleet
        .replica(Arc::new(FailingStore))
        .build()
        .unwrap()
        .get_token()
        .await
        .unwrap_err(); // the old secret is rejected now: an error, after the store's warning

    let logs = capture.text();
    assert!(logs.contains("token taken from the shared cache"), "{logs}");
    assert!(logs.contains("does not open"), "{logs}");
    assert!(logs.contains("shared token cache unavailable"), "{logs}");
    assert!(!logs.contains(SECRET) && !logs.contains("rotated-secret"));
    for token in fleet.emu.issued_tokens() {
        assert!(!logs.contains(token.as_str()), "a token leaked");
    }
}
