//! Rate limits shared through a real redis-server by two replicas (two `SharedLimits`, each
//! with its own connection, as two processes would have), and the local fallback when Redis
//! is closed, mute, or stopped mid-run.
//!
//! Runs only with `--features test-redis-server`. Uses the Redis at
//! `EVOLUTION_TEST_REDIS_URL` when set, else starts `redis-server` (from `PATH`) on a free
//! loopback port; "Redis stopped mid-run" always starts its own. Every test limits
//! deployments of its own, so runs may share one Redis.

use std::net::{Ipv4Addr, TcpListener};
use std::num::NonZeroU32;
use std::time::Duration;

use evolution_pool::limit::SharedLimits;
use evolution_pool::{LimitKind, RateLimits};
use evolution_testkit::{RedisServer, redis};
use futures_util::future::join_all;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::Instant;

/// A port nothing listens on.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn deployment(name: &str) -> String {
    format!("test-{name}-{:016x}", rand::random::<u64>())
}

fn limits(rpm: u32, tpm: u32) -> RateLimits {
    RateLimits::new(NonZeroU32::new(rpm), NonZeroU32::new(tpm))
}

/// Calls a replica limited alone (Redis gave no decision in time).
fn fallbacks(snapshotter: &Snapshotter, deployment: &str) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            let key = key.key();
            key.name() == "evolution_rate_limit_fallback_total"
                && key
                    .labels()
                    .any(|label| label.key() == "deployment" && label.value() == deployment)
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(count) => count,
            other => panic!("a counter, not {other:?}"),
        })
        .sum()
}

/// Two replicas with `rpm = 30`, 80 calls at once: 30 admitted in all (plus one per 2 s
/// the test took), by Redis; a replica started afterwards finds the key spent too.
#[tokio::test]
async fn rpm_is_shared_by_two_replicas() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (_server, url) = redis().await;
    let name = deployment("rpm");
    // Alone, each replica would admit 6: any local decision shows in the count.
    let replica = || {
        let shared = SharedLimits::new(&url).unwrap().local_fraction(0.2);
        limits(30, 0).shared(&shared, &name)
    };
    let (a, b) = (replica(), replica());

    let started = Instant::now();
    let calls = (0..80).map(|i| {
        let replica = if i % 2 == 0 { &a } else { &b };
        replica.acquire(0)
    });
    let results = join_all(calls).await;
    let refills = started.elapsed().as_secs() / 2;

    let admitted = results.iter().filter(|r| r.is_ok()).count() as u64;
    assert!((30..=30 + refills).contains(&admitted), "{admitted}");
    for limited in results.iter().filter_map(|r| r.err()) {
        assert_eq!(limited.kind, LimitKind::Requests);
        assert!(limited.retry_in <= Duration::from_secs(2), "{limited:?}");
    }
    if refills == 0 {
        let late = replica();
        assert_eq!(late.acquire(0).await.unwrap_err().kind, LimitKind::Requests);
    }
    assert_eq!(fallbacks(&snapshotter, &name), 0);
}

/// Two replicas with `tpm = 1000` share the tokens, and each one's corrections reach the
/// shared bucket.
#[tokio::test]
async fn tpm_is_shared_by_two_replicas() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let (_server, url) = redis().await;
    let name = deployment("tpm");
    let replica = || {
        let shared = SharedLimits::new(&url).unwrap().local_fraction(0.2);
        limits(0, 1_000).shared(&shared, &name)
    };
    let (a, b) = (replica(), replica());

    a.acquire(300).await.unwrap();
    b.acquire(300).await.unwrap();
    a.acquire(300).await.unwrap();
    // 900 of 1000 spent: 300 more are 200 short, 12 s at 1000 tokens a minute.
    let limited = b.acquire(300).await.unwrap_err();
    assert_eq!(limited.kind, LimitKind::Tokens);
    assert!(
        limited.retry_in > Duration::from_secs(10) && limited.retry_in <= Duration::from_secs(12),
        "{limited:?}"
    );
    a.acquire(100).await.unwrap();
    // 50 tokens take 3 s to refill.
    assert!(b.acquire(50).await.is_err());

    // b used 100 of its 300: the 200 credited pay for its next call.
    b.settle(300, 100);
    b.acquire(200).await.unwrap();
    assert!(a.acquire(50).await.is_err());
    assert_eq!(fallbacks(&snapshotter, &name), 0);

    // The bucket expires once it would be full again (at most a minute); no RPM, no key.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let pttl = |kind: &str| {
        let key = format!("evolution:ratelimit:{{{name}}}:{kind}");
        redis::cmd("PTTL").arg(key).to_owned()
    };
    let tpm: i64 = pttl("tpm").query_async(&mut connection).await.unwrap();
    assert!((50_000..=60_001).contains(&tpm), "{tpm}");
    let rpm: i64 = pttl("rpm").query_async(&mut connection).await.unwrap();
    assert_eq!(rpm, -2, "no such key");
}

/// Nothing listens: each replica limits alone at its fraction, and no call errs otherwise.
#[tokio::test]
async fn redis_unreachable_limits_locally_at_the_fraction() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let name = deployment("closed");
    let shared = SharedLimits::new(&url).unwrap();
    let limits = limits(30, 1_000).shared(&shared, &name);

    let mut admitted = 0;
    for _ in 0..20 {
        match limits.acquire(10).await {
            Ok(()) => admitted += 1,
            Err(limited) => assert_eq!(limited.kind, LimitKind::Requests),
        }
    }
    assert_eq!(admitted, 15, "half of rpm = 30");
    // The local token bucket holds half of 1000 too.
    let tokens = limits.acquire(500).await.unwrap_err();
    assert_eq!(tokens.kind, LimitKind::Tokens);
    assert_eq!(fallbacks(&snapshotter, &name), 21);
}

/// A server that accepts and never answers: the first call waits out the timeout, the
/// others go local at once instead of each waiting too.
#[tokio::test]
async fn a_mute_redis_costs_one_timeout_per_second() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mute = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let url = format!("redis://{}/", mute.local_addr().unwrap());
    let name = deployment("mute");
    let shared = SharedLimits::new(&url)
        .unwrap()
        .timeout(Duration::from_millis(100));
    let limits = limits(600, 0).shared(&shared, &name);

    let started = Instant::now();
    for _ in 0..20 {
        limits.acquire(0).await.unwrap();
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(900),
        "{elapsed:?}"
    );
    assert_eq!(fallbacks(&snapshotter, &name), 20);
    drop(mute);
}

/// Redis stops mid-run: the replica limits alone; once Redis is back (and its next probe
/// is due), the limits are shared again.
#[tokio::test]
async fn redis_stopped_mid_run_then_back() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut server = RedisServer::start().await;
    let shared = SharedLimits::new(&server.url())
        .unwrap()
        .local_fraction(0.2);
    let name = deployment("outage");
    let limits = limits(30, 0).shared(&shared, &name);

    for _ in 0..10 {
        limits.acquire(0).await.unwrap();
    }
    assert_eq!(fallbacks(&snapshotter, &name), 0);

    server.stop();
    let outcomes = join_all((0..10).map(|_| limits.acquire(0))).await;
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        6,
        "0.2 of 30"
    );
    assert_eq!(fallbacks(&snapshotter, &name), 10);

    server.restart().await;
    // The connection reconnects on its first failure after the restart: allow a few probes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (probed, fell_back) = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (probed, before) = (Instant::now(), fallbacks(&snapshotter, &name));
        let _ = limits.acquire(0).await;
        if fallbacks(&snapshotter, &name) == before {
            break (probed, before);
        }
        assert!(Instant::now() < deadline, "Redis was not used again");
    };
    // Shared again, on the restarted (empty) Redis where that probe took 1 of 30: the
    // other 29, not the local 6 (plus one per 2 s since the probe).
    let outcomes = join_all((0..40).map(|_| limits.acquire(0))).await;
    let refills = probed.elapsed().as_secs() / 2;
    let admitted = outcomes.iter().filter(|r| r.is_ok()).count() as u64;
    assert!((29..=29 + refills).contains(&admitted), "{admitted}");
    assert_eq!(fallbacks(&snapshotter, &name), fell_back);
}
