use std::time::Duration;

use evolution_retry::{Jitter, RetryConfig, RetryLayer};

use crate::{always, call, mocked};

/// Only the budget limits retries here: many attempts allowed, no waits.
fn config() -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(1000)
        .base_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .budget_min_per_sec(1)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_stops_retries() {
    let config = config();
    // 1 retry/s × 10 s of reserve, plus 0.2 for the one request: 10 retries.
    assert_eq!(config.budget_retries(1), 10);
    let layer = RetryLayer::new(config);
    let (service, mut handle) = mocked(&layer);
    let outcome = call(service, &mut handle, always(503)).await;
    assert_eq!(outcome.attempts.len(), 11);
    assert_eq!(outcome.status(), 503);
}

#[tokio::test(start_paused = true)]
async fn clones_of_the_layer_share_the_budget() {
    let layer = RetryLayer::new(config());
    let (first, mut first_handle) = mocked(&layer.clone());
    let (second, mut second_handle) = mocked(&layer);
    assert_eq!(
        call(first, &mut first_handle, always(503))
            .await
            .attempts
            .len(),
        11
    );
    // The budget is spent: the second service's request gets its own deposit only (0.2 retry).
    assert_eq!(
        call(second, &mut second_handle, always(503))
            .await
            .attempts
            .len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_refills_after_its_window() {
    let layer = RetryLayer::new(config());
    let (service, mut handle) = mocked(&layer);
    assert_eq!(
        call(service.clone(), &mut handle, always(503))
            .await
            .attempts
            .len(),
        11
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        call(service, &mut handle, always(503)).await.attempts.len(),
        11
    );
}

#[tokio::test(start_paused = true)]
async fn successful_traffic_funds_retries() {
    // No reserve: only requests pay for retries, 1 retry per 2 requests.
    let config = RetryConfig::builder()
        .max_attempts(1000)
        .base_delay(Duration::ZERO)
        .jitter(Jitter::None)
        .budget_min_per_sec(0)
        .budget_retry_ratio(0.5)
        .build()
        .unwrap();
    let layer = RetryLayer::new(config);
    let (service, mut handle) = mocked(&layer);
    for _ in 0..10 {
        let outcome = call(service.clone(), &mut handle, always(200)).await;
        assert_eq!(outcome.attempts.len(), 1);
    }
    // 10 requests paid for 5 retries; this one pays for half of a sixth.
    let outcome = call(service, &mut handle, always(503)).await;
    assert_eq!(outcome.attempts.len(), 1 + 5);
}
