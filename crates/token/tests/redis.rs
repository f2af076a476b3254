//! The shared token cache against a real redis-server: the scenarios `tests/all` runs
//! against `InMemoryStore`, Redis stopped mid-run, and the store's own contract.
//!
//! Runs only with `--features test-redis-server`, and then needs `EVOLUTION_TEST_REDIS_URL` (for example
//! `redis://127.0.0.1:6390/`): without it the tests fail rather than pass unseen. "Redis
//! stopped mid-run" starts and kills its own `redis-server` (from `PATH`) on a free
//! loopback port. Every test uses key ids of its own, so runs may share one Redis.

use std::sync::Arc;
use std::time::Duration;

use evolution_testkit::RedisServer;
use evolution_token::store::{RedisStore, TokenStore};
use futures_util::future::join_all;
use tokio::time::Instant;

#[path = "scenarios/shared_cache.rs"]
mod scenarios;

use scenarios::{Events, Fleet, same_value};

fn redis_url() -> String {
    std::env::var("EVOLUTION_TEST_REDIS_URL").expect(
        "EVOLUTION_TEST_REDIS_URL must name the redis-server these tests use, for example \
         redis://127.0.0.1:6390/ (they run only with --features test-redis-server)",
    )
}

/// Each replica gets its own connection, as separate processes would.
fn per_replica() -> impl Fn() -> Arc<dyn TokenStore> {
    let url = redis_url();
    move || Arc::new(RedisStore::new(&url).expect("a valid Redis URL"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_fleet_makes_one_iam_request() {
    scenarios::cold_fleet_makes_one_iam_request(&per_replica()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lock_holder_is_replaced_within_the_lock_ttl() {
    scenarios::dead_lock_holder_is_replaced_within_the_lock_ttl(&per_replica()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_never_taken_back() {
    scenarios::a_rejected_token_is_never_taken_back(&per_replica()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_values_are_sealed() {
    scenarios::stored_values_are_sealed(&per_replica()).await;
}

/// What the protocol relies on: values expire, the lock is exclusive, expires, and is
/// released only by its holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_contract() {
    let store = RedisStore::new(&redis_url()).unwrap();
    let key = format!("evolution:token:test:{:016x}", rand::random::<u64>());

    assert!(store.load(&key).await.unwrap().is_none());
    store
        .save(&key, b"\x00sealed\xff", Duration::from_secs(60))
        .await
        .unwrap();
    let stored = store.load(&key).await.unwrap().unwrap();
    assert_eq!(stored.value, b"\x00sealed\xff");
    let ttl = stored.ttl.unwrap();
    assert!(
        ttl > Duration::from_secs(58) && ttl <= Duration::from_secs(60),
        "{ttl:?}"
    );
    store
        .save(&key, b"short", Duration::from_millis(100))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.load(&key).await.unwrap().is_none());

    let ttl = Duration::from_millis(300);
    let first = store.try_lock(&key, ttl).await.unwrap().unwrap();
    assert!(store.try_lock(&key, ttl).await.unwrap().is_none());
    // Its holder died: the lock expires and another takes it...
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let second = store.try_lock(&key, ttl).await.unwrap().unwrap();
    // ...and the first holder's late unlock does not release it.
    store.unlock(&key, &first).await.unwrap();
    assert!(store.try_lock(&key, ttl).await.unwrap().is_none());
    store.unlock(&key, &second).await.unwrap();
    let third = store.try_lock(&key, ttl).await.unwrap().unwrap();
    store.unlock(&key, &third).await.unwrap();
}

/// Redis stops mid-run: cached tokens keep being served, refreshes go to IAM directly
/// (warning and event each), a replica started meanwhile works too; once Redis is back,
/// the replicas share again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run() {
    let mut server = RedisServer::start().await;
    let fleet = Fleet::start().await;
    let events = Events::default();
    let url = server.url();
    let replica = || {
        let store = Arc::new(RedisStore::new(&url).unwrap());
        events.observe(fleet.replica(store)).build().unwrap()
    };
    let replicas: Vec<_> = (0..3).map(|_| replica()).collect();
    let tokens = join_all(replicas.iter().map(|r| r.get_token())).await;
    let first = tokens[0].as_ref().unwrap();
    assert!(
        tokens
            .iter()
            .all(|t| same_value(t.as_ref().unwrap(), first))
    );
    assert_eq!(fleet.iam_requests(), 1);

    server.stop();
    for replica in &replicas {
        for _ in 0..100 {
            assert!(same_value(&replica.get_token().await.unwrap(), first));
        }
    }
    assert_eq!(fleet.iam_requests(), 1, "cached tokens need no store");
    let outage = Instant::now();
    for replica in &replicas {
        replica.invalidate();
        replica.get_token().await.unwrap();
    }
    replica().get_token().await.unwrap();
    assert_eq!(fleet.iam_requests(), 5, "each refresh went to IAM directly");
    assert!(
        events.unavailable().len() >= 4,
        "{:?}",
        events.unavailable()
    );
    assert!(
        outage.elapsed() < Duration::from_secs(8),
        "{:?}",
        outage.elapsed()
    );

    server.restart().await;
    let unavailable = events.unavailable().len();
    replicas[0].invalidate();
    let fresh = replicas[0].get_token().await.unwrap();
    replicas[1].invalidate();
    assert!(same_value(&replicas[1].get_token().await.unwrap(), &fresh));
    assert_eq!(fleet.iam_requests(), 6, "shared again");
    assert_eq!(events.unavailable().len(), unavailable);
}
