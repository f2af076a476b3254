use std::time::Duration;

use evolution_emulator::{Fault, Route};
use evolution_token::TokenEvent;
use tokio::time::Instant;

use crate::{builder, emulator, emulator_with_ttl, manager};

#[tokio::test(start_paused = true)]
async fn token_is_cached_between_calls() {
    let emu = emulator().await;
    let tokens = manager(&emu);
    let first = tokens.get_token().await.unwrap();
    for _ in 0..100 {
        assert!(tokens.get_token().await.unwrap().same_as(&first));
    }
    assert_eq!(emu.stats().iam_requests, 1);
    let info = tokens.info();
    assert!(info.has_token && info.valid);
    assert_eq!(info.refresh_buffer, Duration::from_secs(30));
}

/// In the refresh-ahead window every caller gets the cached token at once while one
/// background refresh runs, even when IAM takes 500 ms.
#[tokio::test(start_paused = true)]
async fn refresh_ahead_never_makes_callers_wait() {
    let emu = emulator().await; // 3600 s tokens
    let tokens = manager(&emu);
    let old = tokens.get_token().await.unwrap();
    emu.set_latency(Route::Iam, Duration::from_millis(500));

    // 3440 s: inside the ahead window (refresh point jittered within 3300..=3435 s),
    // before the 30 s buffer (3570 s).
    tokio::time::advance(Duration::from_secs(3440)).await;
    for _ in 0..50 {
        let started = Instant::now();
        let token = tokens.get_token().await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO, "a caller waited on IAM");
        assert!(token.same_as(&old));
        tokio::time::advance(Duration::from_millis(5)).await;
    }
    // The background refresh finishes; the new token is served from then on.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let new = tokens.get_token().await.unwrap();
    assert!(!new.same_as(&old));
    assert_eq!(emu.stats().iam_requests, 2);
    assert_eq!(emu.stats().iam_in_flight_max, 1);
}

/// With background refresh off (the reference's behaviour), a caller inside the 30 s
/// buffer waits for the new token; an expired token is never handed out.
#[tokio::test(start_paused = true)]
async fn inside_the_buffer_callers_wait_for_the_new_token() {
    let emu = emulator_with_ttl(Duration::from_secs(600)).await;
    let tokens = builder(&emu)
        .refresh_ahead(Duration::from_secs(30))
        .build()
        .unwrap();
    let old = tokens.get_token().await.unwrap();
    emu.set_latency(Route::Iam, Duration::from_millis(500));

    tokio::time::advance(Duration::from_secs(575)).await;
    assert!(!tokens.info().valid);
    let started = Instant::now();
    let new = tokens.get_token().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(!new.same_as(&old));
    assert!(new.expires_in() > Duration::from_secs(590));
    assert_eq!(emu.stats().iam_requests, 2);
}

/// The monitor refreshes with no callers: after an idle hour the next call finds a
/// fresh token and does not wait.
#[tokio::test(start_paused = true)]
async fn monitor_keeps_the_token_fresh_without_callers() {
    let emu = emulator_with_ttl(Duration::from_secs(600)).await;
    let tokens = manager(&emu);
    let _monitor = tokens.spawn_monitor();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(emu.stats().iam_requests, 1, "the monitor fetches at once");

    tokio::time::sleep(Duration::from_secs(3600)).await;
    let requests = emu.stats().iam_requests;
    // 600 s tokens refreshed between 270 and 435 s into their life: 8 to 14 refreshes.
    assert!((8..=14).contains(&requests), "{requests} IAM requests");
    let started = Instant::now();
    let token = tokens.get_token().await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(token.expires_in() > Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn monitor_stops_when_its_guard_is_dropped() {
    let emu = emulator_with_ttl(Duration::from_secs(600)).await;
    let tokens = manager(&emu);
    drop(tokens.spawn_monitor());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(emu.stats().iam_requests, 0);
}

/// A refresh that fails while the cached token is still valid: the token keeps being
/// served (without a wait once IAM is known to be down); after real expiry the
/// caller gets the error.
#[tokio::test(start_paused = true)]
async fn stale_token_is_served_through_an_iam_outage() {
    let emu = emulator_with_ttl(Duration::from_secs(600)).await;
    let stale_served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = stale_served.clone();
    let tokens = builder(&emu)
        .observer(move |event: &TokenEvent| {
            if matches!(event, TokenEvent::StaleServed { .. }) {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    let old = tokens.get_token().await.unwrap();

    // IAM down: every request answers 503 from now on.
    for _ in 0..1000 {
        emu.push_fault(Route::Iam, Fault::status(503));
    }
    tokio::time::advance(Duration::from_secs(580)).await; // inside the buffer, 20 s left
    let token = tokens.get_token().await.unwrap();
    assert!(token.same_as(&old));
    let after_first = emu.stats().iam_requests;
    assert_eq!(after_first, 1 + 3, "one refresh of 3 attempts");

    // While IAM backs off, callers get the stale token without another IAM request.
    let started = Instant::now();
    assert!(tokens.get_token().await.unwrap().same_as(&old));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(emu.stats().iam_requests, after_first);

    // After real expiry the error reaches the caller.
    tokio::time::advance(Duration::from_secs(30)).await;
    let error = tokens.get_token().await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(matches!(
        error,
        evolution_token::TokenError::Unavailable { attempts: 3, .. }
    ));
    assert!(stale_served.load(std::sync::atomic::Ordering::Relaxed) >= 2);
}
