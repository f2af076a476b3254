//! A pool of deployments through `EvolutionInference`.

use std::collections::BTreeMap;
use std::time::Duration;

use evolution_client::pool::{DeploymentState, Strategy};
use evolution_client::{Deployment, Error, EvolutionInference};
use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Route};

const KEYS: [&str; 3] = ["key-a", "key-b", "key-c"];

async fn three_keys() -> Emulator {
    let mut builder = Emulator::builder();
    for key in KEYS {
        builder = builder.key(key, format!("{key}-secret"));
    }
    builder.start().await.unwrap()
}

fn pool(emu: &Emulator, strategy: Strategy) -> evolution_client::EvolutionInferenceBuilder {
    let mut builder = EvolutionInference::builder()
        .model(DEMO_MODEL)
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
        .strategy(strategy);
    for key in KEYS {
        builder = builder.deployment(Deployment::new(key, key, format!("{key}-secret")));
    }
    builder
}

/// Which key answered, from the emulator's echo (`[key] echo: ...`).
fn served_by(answer: &str) -> &str {
    answer
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map_or("?", |(key, _)| key)
}

#[tokio::test(start_paused = true)]
async fn round_robin_spreads_calls_over_every_key() {
    let emu = three_keys().await;
    let llm = pool(&emu, Strategy::RoundRobin).build().unwrap();
    let mut by_key = BTreeMap::new();
    for i in 0..30 {
        let answer = llm.invoke(format!("q{i}")).await.unwrap();
        *by_key.entry(served_by(&answer).to_owned()).or_insert(0) += 1;
    }
    assert_eq!(by_key, KEYS.iter().map(|k| (k.to_string(), 10)).collect());
    assert_eq!(emu.stats().iam_requests, 3, "one token per key");
}

#[tokio::test(start_paused = true)]
async fn a_disabled_key_fails_over_at_once_and_cools_down() {
    let emu = three_keys().await;
    emu.disable_key("key-a");
    let llm = pool(&emu, Strategy::Ordered).build().unwrap();
    for i in 0..20 {
        let answer = llm.invoke(format!("q{i}")).await.unwrap();
        assert_eq!(served_by(&answer), "key-b");
    }
    let stats = emu.stats();
    // Asked once (and refused), then cooled for the key cooldown: not once per call.
    assert!(stats.iam_requests_for("key-a") <= 2, "{stats:?}");
    assert_eq!(stats.chat_requests_for("key-b"), 20);
    let states: Vec<_> = llm
        .pool()
        .unwrap()
        .deployments()
        .iter()
        .map(|d| d.state)
        .collect();
    assert_eq!(
        states,
        [
            DeploymentState::Cooling,
            DeploymentState::Healthy,
            DeploymentState::Healthy
        ]
    );
    let stats = llm.stats();
    assert_eq!(stats.deployments[0].state, "cooling");
    assert_eq!(stats.deployments[0].reason, Some("key_rejected"));
}

#[tokio::test(start_paused = true)]
async fn a_429_moves_the_call_to_the_next_key_without_backoff() {
    let emu = three_keys().await;
    let llm = pool(&emu, Strategy::Ordered).build().unwrap();
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "30"),
    );
    let started = tokio::time::Instant::now();
    let answer = llm.invoke("q").await.unwrap();
    assert_eq!(served_by(&answer), "key-b");
    assert!(started.elapsed() < Duration::from_secs(1), "no backoff");
    // key-a cools for 30 s: the next calls go to key-b, then key-a is probed.
    for _ in 0..3 {
        assert_eq!(served_by(&llm.invoke("q").await.unwrap()), "key-b");
    }
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(served_by(&llm.invoke("q").await.unwrap()), "key-a");
}

#[tokio::test(start_paused = true)]
async fn every_key_disabled_ends_in_one_auth_error() {
    let emu = three_keys().await;
    for key in KEYS {
        emu.disable_key(key);
    }
    let llm = pool(&emu, Strategy::Ordered).no_retry().build().unwrap();
    let error = llm.invoke("q").await.unwrap_err();
    assert!(
        matches!(error, Error::Auth(ref e) if e.is_auth()),
        "{error:?}"
    );
    // Every key cools now: the next call fails at once, naming the soonest.
    let error = llm.invoke("q").await.unwrap_err();
    match error {
        Error::Unavailable(unavailable) => {
            assert_eq!(&*unavailable.soonest, "key-a");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn deployments_and_a_backup_key_are_refused_together() {
    let error = EvolutionInference::builder()
        .model(DEMO_MODEL)
        .base_url("http://127.0.0.1:1/v1")
        .deployment(Deployment::new("a", "key-a", "s"))
        .backup_credentials("b", "s")
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("add the backup key as the last deployment"),
        "{error}"
    );
}

/// Issue 19's mixed keys: one disabled at IAM, one answering 429 with `Retry-After: 30`,
/// one healthy. Every call succeeds, and the cooldowns show in the per-key counts.
#[tokio::test(start_paused = true)]
async fn mixed_keys_every_call_succeeds_and_the_bad_keys_cool_down() {
    let emu = Emulator::builder()
        .key("disabled", "s1")
        .key("limited", "s2")
        .key("healthy", "s3")
        .disable_key("disabled")
        .key_fault(
            "limited",
            Fault::status(429).with_header("retry-after", "30"),
        )
        .start()
        .await
        .unwrap();
    let llm = EvolutionInference::builder()
        .model(DEMO_MODEL)
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
        .strategy(Strategy::RoundRobin)
        .deployment(Deployment::new("disabled", "disabled", "s1"))
        .deployment(Deployment::new("limited", "limited", "s2"))
        .deployment(Deployment::new("healthy", "healthy", "s3"))
        .build()
        .unwrap();
    // Two minutes of traffic, 10 calls every 5 s.
    for round in 0..24 {
        for i in 0..10 {
            let answer = llm.invoke(format!("r{round} q{i}")).await.unwrap();
            assert_eq!(served_by(&answer), "healthy");
        }
        tokio::time::advance(Duration::from_secs(5)).await;
    }
    let stats = emu.stats();
    assert_eq!(stats.chat_requests_for("healthy"), 240);
    // Refused once, then cooling for the key cooldown (5 minutes): no second IAM request.
    assert_eq!(stats.iam_requests_for("disabled"), 1, "{stats:?}");
    assert_eq!(stats.api_requests_for("disabled"), 0);
    // One 429, then one probe per 30 s cooldown: about 4 in two minutes, not one per call.
    let limited = stats.api_requests_for("limited");
    assert!(
        (3..=6).contains(&limited),
        "{limited} calls reached the limited key"
    );
    assert_eq!(llm.stats().successes, 240);
}

/// Issue 19's balancing: `least_loaded` with one key answering 50 ms slower sends it under
/// 15% of the calls, and its p99 stays within 1.2× the all-fast case's.
///
/// 8 callers over 3 keys: each fast key has about 4 calls in flight, so its cost (5 ms × 5)
/// stays well under the slow key's (55 ms × 1). With 16 callers a fast key's cost (5 ms × 9)
/// nears the slow key's, and `least_loaded` rightly sends the slow key more: about 1%, where
/// the p99 of 800 calls turns into its latency.
#[tokio::test(start_paused = true)]
async fn least_loaded_keeps_away_from_a_slow_key() {
    const CALLERS: usize = 8;
    const CALLS: usize = 100;

    /// The calls measured (after a warm-up) that went to the slow key, and their p99.
    async fn run(slow: bool) -> (u64, Duration) {
        let mut builder = Emulator::builder().latency(Route::Chat, Duration::from_millis(5));
        for key in KEYS {
            builder = builder.key(key, format!("{key}-secret"));
        }
        if slow {
            builder = builder.key_latency("key-c", Duration::from_millis(50));
        }
        let emu = builder.start().await.unwrap();
        let llm = pool(&emu, Strategy::LeastLoaded).build().unwrap();
        // Every key's token and a first latency for each, outside the measurement.
        for _ in 0..30 {
            llm.invoke("warm").await.unwrap();
        }
        let warm = emu.stats().chat_requests_for("key-c");
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let llm = llm.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(CALLS);
                    for _ in 0..CALLS {
                        let started = tokio::time::Instant::now();
                        llm.invoke("q").await.unwrap();
                        latencies.push(started.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for caller in callers {
            latencies.extend(caller.await.unwrap());
        }
        latencies.sort();
        let p99 = latencies[latencies.len() * 99 / 100];
        (emu.stats().chat_requests_for("key-c") - warm, p99)
    }
    let (_, fast_p99) = run(false).await;
    let (to_slow, p99) = run(true).await;
    let total = CALLERS * CALLS;
    assert!(
        (to_slow as f64) < 0.15 * total as f64,
        "{to_slow} of {total} calls went to the slow key"
    );
    assert!(
        p99.as_secs_f64() <= 1.2 * fast_p99.as_secs_f64(),
        "p99 {p99:?} against {fast_p99:?} with every key fast ({to_slow} of {total} calls to the slow key)"
    );
}

/// A static API key the API rejects cools its deployment like a rejected IAM key, with no
/// IAM request made for it.
#[tokio::test(start_paused = true)]
async fn a_rejected_api_key_cools_down_without_an_iam_request() {
    let emu = Emulator::builder()
        .key("healthy", "s")
        .api_key("good-api-key")
        .start()
        .await
        .unwrap();
    let llm = EvolutionInference::builder()
        .model(DEMO_MODEL)
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
        .deployment(Deployment::api_key("revoked", "unknown-api-key"))
        .deployment(Deployment::new("healthy", "healthy", "s"))
        .build()
        .unwrap();
    for i in 0..10 {
        let answer = llm.invoke(format!("q{i}")).await.unwrap();
        assert_eq!(served_by(&answer), "healthy");
    }
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 1, "only the IAM key's token: {stats:?}");
    // The first call and the 401's resend with the same key, then a cooldown.
    assert_eq!(stats.chat_status(401), 2, "{stats:?}");
    let pool = llm.pool().unwrap().deployments();
    assert_eq!(pool[0].state, DeploymentState::Cooling);
}

/// The pool's series, labelled by deployment name (never a key), in the metrics recorder.
#[tokio::test(start_paused = true)]
async fn the_pool_records_its_series_by_deployment_name() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let emu = three_keys().await;
    emu.disable_key("key-a");
    let llm = pool(&emu, Strategy::Ordered).build().unwrap();
    for _ in 0..4 {
        llm.invoke("q").await.unwrap();
    }
    let series: BTreeMap<String, f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            let name = key.key().name();
            name.starts_with("evolution_deployment")
                || name == "evolution_rate_limited_total"
                || name == "evolution_token_expires_in_seconds"
        })
        .map(|(key, _, _, value)| {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            (
                format!("{}{{{}}}", key.key().name(), labels.join(",")),
                value,
            )
        })
        .collect();
    let expected: BTreeMap<String, f64> = [
        (
            "evolution_deployment_cooldowns_total{deployment=key-a,reason=key_rejected}",
            1.0,
        ),
        ("evolution_deployment_in_flight{deployment=key-a}", 0.0),
        ("evolution_deployment_in_flight{deployment=key-b}", 0.0),
        (
            "evolution_deployment_requests_total{deployment=key-a,outcome=key_rejected}",
            1.0,
        ),
        (
            "evolution_deployment_requests_total{deployment=key-b,outcome=success}",
            4.0,
        ),
        ("evolution_deployment_state{deployment=key-a}", 1.0),
        ("evolution_deployment_state{deployment=key-b}", 0.0),
        ("evolution_deployment_state{deployment=key-c}", 0.0),
        // Each key's token lifetime is its own series (key-a never got one).
        (
            "evolution_token_expires_in_seconds{deployment=key-b}",
            3600.0,
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    assert_eq!(series, expected);
}

#[test]
fn a_password_in_a_deployments_base_url_is_refused_and_never_printed() {
    let deployment =
        Deployment::new("main", "k", "s").base_url("https://user:hunter2@api.example/v1");
    assert!(!format!("{deployment:?}").contains("hunter2"));
    let error = EvolutionInference::builder()
        .model("m")
        .base_url("https://api.example/v1")
        .deployment(deployment)
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid configuration of `deployment`: deployment `main`: base_url: it holds a user name or password; remove them (the deployment's key goes in key_id and secret, or api_key)"
    );
}
