//! Shared-cache scenarios written once for every store: `tests/all` runs them against
//! `InMemoryStore`, `tests/redis.rs` against a real redis-server, and the
//! `fleet_iam_rate` example reuses the fleet simulation.
//!
//! `new_store` gives each replica its store: the same `Arc<InMemoryStore>` for all, or a
//! `RedisStore` with its own connection per replica, as separate processes would have.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evolution_emulator::{Emulator, Fault, Route};
use evolution_token::store::{InMemoryStore, TokenStore, store_key};
use evolution_token::{
    AccessToken, Credentials, DEFAULT_FETCH_ATTEMPTS, StoreOperation, TokenEvent, TokenManager,
    TokenManagerBuilder,
};
use futures_util::future::join_all;
use secrecy::ExposeSecret;
use tokio::time::Instant;

pub(crate) const SECRET: &str = "fleet-secret-do-not-print";

/// An emulator with a key id of its own, so that runs sharing one Redis never meet.
pub(crate) struct Fleet {
    pub(crate) emu: Emulator,
    pub(crate) key_id: String,
}

impl Fleet {
    pub(crate) async fn start() -> Self {
        Self::with_ttl(Duration::from_secs(3600)).await
    }

    pub(crate) async fn with_ttl(ttl: Duration) -> Self {
        let key_id = format!("fleet-{:016x}", rand::random::<u64>());
        let emu = Emulator::builder()
            .key(&key_id, SECRET)
            .ttl(ttl)
            .start()
            .await
            .expect("emulator starts");
        Self { emu, key_id }
    }

    /// A replica's manager, on `store`.
    pub(crate) fn replica(&self, store: Arc<dyn TokenStore>) -> TokenManagerBuilder {
        self.alone().shared_cache(store)
    }

    /// A replica without a shared cache.
    pub(crate) fn alone(&self) -> TokenManagerBuilder {
        TokenManager::builder(Credentials::new(&self.key_id, SECRET)).auth_url(self.emu.auth_url())
    }

    pub(crate) fn iam_requests(&self) -> u64 {
        self.emu.stats().iam_requests
    }
}

pub(crate) fn same_value(a: &AccessToken, b: &AccessToken) -> bool {
    a.secret().expose_secret() == b.secret().expose_secret()
}

/// Counts the events of the shared cache.
#[derive(Clone, Default)]
pub(crate) struct Events {
    hits: Arc<AtomicUsize>,
    unavailable: Arc<Mutex<Vec<StoreOperation>>>,
}

impl Events {
    pub(crate) fn observe(&self, builder: TokenManagerBuilder) -> TokenManagerBuilder {
        let events = self.clone();
        builder.observer(move |event: &TokenEvent| match event {
            TokenEvent::SharedCacheHit { .. } => {
                events.hits.fetch_add(1, Ordering::Relaxed);
            }
            TokenEvent::SharedCacheUnavailable { operation, .. } => {
                events.unavailable.lock().unwrap().push(*operation);
            }
            _ => {}
        })
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn unavailable(&self) -> Vec<StoreOperation> {
        self.unavailable.lock().unwrap().clone()
    }
}

/// 8 replicas × 1,000 calls on a cold cache: exactly one IAM request, one token for all.
pub(crate) async fn cold_fleet_makes_one_iam_request(new_store: &dyn Fn() -> Arc<dyn TokenStore>) {
    let fleet = Fleet::start().await;
    fleet.emu.set_latency(Route::Iam, Duration::from_millis(50));
    let events = Events::default();
    let replicas: Vec<TokenManager> = (0..8)
        .map(|_| events.observe(fleet.replica(new_store())).build().unwrap())
        .collect();

    let calls = replicas.iter().flat_map(|replica| {
        (0..1000).map(move |_| {
            let replica = replica.clone();
            tokio::spawn(async move { replica.get_token().await })
        })
    });
    let tokens: Vec<AccessToken> = join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();

    assert_eq!(tokens.len(), 8000);
    assert!(tokens.iter().all(|token| same_value(token, &tokens[0])));
    assert_eq!(fleet.iam_requests(), 1);
    assert_eq!(fleet.emu.stats().iam_in_flight_max, 1);
    assert_eq!(
        events.hits(),
        7,
        "every other replica took the stored token"
    );
    assert!(events.unavailable().is_empty());
}

/// The replica holding the lock dies mid-fetch (its runtime is shut down while IAM is
/// answering it): another replica takes over once the lock expires, and no call fails.
pub(crate) async fn dead_lock_holder_is_replaced_within_the_lock_ttl(
    new_store: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let lock_ttl = Duration::from_secs(1);
    let fleet = Fleet::start().await;
    // The first IAM request (the victim's) hangs for a minute.
    fleet
        .emu
        .push_fault(Route::Iam, Fault::delay(Duration::from_secs(60)));

    let victim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let victim = fleet
        .replica(new_store())
        .shared_cache_lock_ttl(lock_ttl)
        .build()
        .unwrap();
    drop(victim_runtime.spawn(async move { victim.get_token().await }));
    let waiting_since = Instant::now();
    while fleet.iam_requests() == 0 {
        assert!(
            waiting_since.elapsed() < Duration::from_secs(10),
            "the victim never called IAM"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // It holds the lock and waits on IAM: kill it there.
    victim_runtime.shutdown_background();
    let killed = Instant::now();

    let replicas: Vec<TokenManager> = (0..3)
        .map(|_| {
            fleet
                .replica(new_store())
                .shared_cache_lock_ttl(lock_ttl)
                .build()
                .unwrap()
        })
        .collect();
    let calls = replicas.iter().flat_map(|replica| {
        (0..100).map(move |_| {
            let replica = replica.clone();
            tokio::spawn(async move { replica.get_token().await })
        })
    });
    let tokens: Vec<AccessToken> = join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().expect("no call fails"))
        .collect();
    let took = killed.elapsed();

    assert!(tokens.iter().all(|token| same_value(token, &tokens[0])));
    // The victim's request and the one of the replica that took over; nobody called IAM
    // while the dead holder's lock lived.
    assert_eq!(fleet.iam_requests(), 2);
    // Within the lock's lifetime, plus one poll and the IAM exchange.
    assert!(
        took < lock_ttl + Duration::from_millis(750),
        "took {took:?}"
    );
}

/// The store holds no token in clear (nor the secret); a value sealed with another secret,
/// or tampered with, is ignored and replaced.
pub(crate) async fn stored_values_are_sealed(new_store: &dyn Fn() -> Arc<dyn TokenStore>) {
    let fleet = Fleet::start().await;
    let store = new_store();
    let tokens = fleet.replica(store.clone()).build().unwrap();
    let token = tokens.get_token().await.unwrap();
    let key = store_key(&fleet.key_id, tokens.auth_url());
    assert!(!key.contains(&fleet.key_id));

    let stored = store
        .load(&key)
        .await
        .unwrap()
        .expect("the token is stored");
    let contains = |needle: &str| {
        stored
            .value
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    assert!(!contains(token.secret().expose_secret()), "token in clear");
    assert!(!contains(SECRET), "secret in clear");
    let ttl = stored.ttl.expect("stored with an expiry");
    assert!(ttl <= Duration::from_secs(3600) && ttl > Duration::from_secs(3500));

    // The key's secret changes at IAM: a replica with the new secret cannot open the
    // value sealed with the old one, and fetches (and stores) its own.
    fleet.emu.add_key(&fleet.key_id, "rotated-secret");
    let rotated = TokenManager::builder(Credentials::new(&fleet.key_id, "rotated-secret"))
        .auth_url(fleet.emu.auth_url())
        .shared_cache(new_store())
        .build()
        .unwrap();
    let new_token = rotated.get_token().await.unwrap();
    assert!(!same_value(&new_token, &token));
    assert_eq!(fleet.iam_requests(), 2);

    // A tampered value is ignored too.
    let mut tampered = store.load(&key).await.unwrap().unwrap().value;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    store
        .save(&key, &tampered, Duration::from_secs(3600))
        .await
        .unwrap();
    let another = TokenManager::builder(Credentials::new(&fleet.key_id, "rotated-secret"))
        .auth_url(fleet.emu.auth_url())
        .shared_cache(new_store())
        .build()
        .unwrap();
    another.get_token().await.unwrap();
    assert_eq!(fleet.iam_requests(), 3);
}

/// A token rejected by the API (revoked at IAM: a 401) is never taken back from the store,
/// even when the refresh that should replace it fails first: 64 callers each see the 401,
/// invalidate, and ask again until IAM is back; none of them gets the rejected token again.
/// Runs on paused time (`InMemoryStore`) or real time (Redis: about a second of backoff).
pub(crate) async fn a_rejected_token_is_never_taken_back(
    new_store: &dyn Fn() -> Arc<dyn TokenStore>,
) {
    let fleet = Fleet::start().await;
    let a = fleet.replica(new_store()).build().unwrap();
    let b = fleet.replica(new_store()).build().unwrap();
    let rejected = a.get_token().await.unwrap();
    assert!(same_value(&b.get_token().await.unwrap(), &rejected));
    assert_eq!(fleet.iam_requests(), 1);

    fleet.emu.revoke_token(rejected.secret().expose_secret());
    // The first refresh after the 401 fails at IAM (every attempt), so the store still
    // holds the rejected token when the next one looks.
    for _ in 0..DEFAULT_FETCH_ATTEMPTS {
        fleet.emu.push_fault(Route::Iam, Fault::status(503));
    }
    let callers = (0..64).map(|_| {
        let b = b.clone();
        let rejected = rejected.clone();
        tokio::spawn(async move {
            let token = get_token_until_ok(&b).await;
            if !same_value(&token, &rejected) {
                return token;
            }
            // What the auth layer does with a 401: invalidate, ask again, resend once.
            b.invalidate_if_current(&token);
            get_token_until_ok(&b).await
        })
    });
    for joined in join_all(callers).await {
        let token = joined.unwrap();
        assert!(
            !same_value(&token, &rejected),
            "the rejected token was taken back from the store: the resend would 401 again"
        );
    }
    // The first token, the failed refresh's attempts, and one new token.
    assert_eq!(
        fleet.iam_requests(),
        1 + u64::from(DEFAULT_FETCH_ATTEMPTS) + 1
    );
}

/// Asks until a token comes, 50 ms after each (transient) failure.
async fn get_token_until_ok(tokens: &TokenManager) -> AccessToken {
    loop {
        match tokens.get_token().await {
            Ok(token) => return token,
            Err(error) => {
                assert!(error.is_transient(), "{error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// IAM requests per simulated hour for `replicas` replicas calling `get_token` every
/// `every`, all on one `InMemoryStore` or each on its own. Needs paused time.
pub(crate) async fn fleet_iam_requests_per_hour(
    replicas: usize,
    hours: u32,
    every: Duration,
    shared: bool,
) -> Vec<u64> {
    let hour = Duration::from_secs(3600);
    let fleet = Fleet::with_ttl(hour).await;
    let store = Arc::new(InMemoryStore::new());
    let end = Instant::now() + hour * hours;
    let tasks: Vec<_> = (0..replicas)
        .map(|_| {
            let builder = match shared {
                true => fleet.replica(store.clone()),
                false => fleet.alone(),
            };
            let replica = builder.build().unwrap();
            tokio::spawn(async move {
                while Instant::now() < end {
                    replica.get_token().await.expect("no call fails");
                    tokio::time::sleep(every).await;
                }
            })
        })
        .collect();
    let mut per_hour = Vec::new();
    let mut before = 0;
    for _ in 0..hours {
        tokio::time::sleep(hour).await;
        let requests = fleet.iam_requests();
        per_hour.push(requests - before);
        before = requests;
    }
    for task in tasks {
        task.await.unwrap();
    }
    per_hour
}
