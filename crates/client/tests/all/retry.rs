//! The default retry layer, through `EvolutionInference`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use evolution_client::{Error, RetryConfig};
use evolution_emulator::{Fault, Route};
use evolution_retry::RetryEvent;
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::{builder, client, emulator};

#[tokio::test(start_paused = true)]
async fn transient_statuses_are_retried_to_success() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(503));
    emu.push_fault(Route::Chat, Fault::status(503));
    client(&emu).invoke("hi").await.unwrap();
    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 3);
    assert_eq!(stats.chat_status(503), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "1"),
    );
    let llm = builder(&emu)
        .retry(
            RetryConfig::builder()
                .base_delay(Duration::from_millis(10))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    let started = Instant::now();
    llm.invoke("hi").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(emu.stats().chat_requests, 2);
}

/// A retry configuration of the caller's, with an observer of its own: the client adds its
/// metrics observer beside it, and both are told about the retry.
#[tokio::test(start_paused = true)]
async fn the_metrics_observer_joins_the_callers_retry_observer() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(503));
    let seen = Arc::new(AtomicU32::new(0));
    let counted = seen.clone();
    let llm = builder(&emu)
        .retry(
            RetryConfig::builder()
                .base_delay(Duration::from_millis(10))
                .observer(move |_: &RetryEvent| {
                    counted.fetch_add(1, Ordering::Relaxed);
                })
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    llm.invoke("hi").await.unwrap();
    assert_eq!(emu.stats().chat_requests, 2);
    assert_eq!(seen.load(Ordering::Relaxed), 1);
    assert_eq!(llm.stats().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_bad_request_is_not_retried() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(400));
    let error = client(&emu).invoke("hi").await.unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(400));
    assert_eq!(emu.stats().chat_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_deadline_fails_at_once() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(503).with_header("retry-after", "30"),
    );
    let llm = builder(&emu)
        .total_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(matches!(error, Error::Api { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(emu.stats().chat_requests, 1);
}

/// 100 concurrent calls against a backend failing every request: the shared budget
/// bounds the attempts to 100 + budget_retries(100) = 100 + (10/s × 10 s + 20 % of 100)
/// = 220, not the 300 that three attempts each would make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_bounds_a_storm() {
    let emu = emulator().await;
    emu.set_fault_probability(1.0, 7, &[Route::Chat]);
    emu.set_random_faults(vec![Fault::status(503)]);
    let config = RetryConfig::builder()
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    let bound = 100 + config.budget_retries(100);
    assert_eq!(bound, 220);
    let llm = builder(&emu).retry(config).build().unwrap();
    let calls = (0..100).map(|i| {
        let llm = llm.clone();
        tokio::spawn(async move { llm.invoke(format!("q{i}")).await })
    });
    for result in join_all(calls).await {
        assert_eq!(
            result.unwrap().unwrap_err().status().map(|s| s.as_u16()),
            Some(503)
        );
    }
    let attempts = emu.stats().chat_requests;
    assert!(attempts <= bound, "{attempts} attempts");
    assert!(attempts > 100, "some retries were made: {attempts}");
}
