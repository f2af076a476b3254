//! A `backoff` crate schedule in place of the built-in one (feature `backoff`).

use std::time::Duration;

use evolution_retry::{RetryConfig, RetryReason};

use crate::{Events, always, run, status, status_with};

fn schedule() -> backoff::ExponentialBackoff {
    backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(Duration::from_millis(300))
        .with_multiplier(3.0)
        .with_randomization_factor(0.0)
        .with_max_elapsed_time(None)
        .build()
}

#[tokio::test(start_paused = true)]
async fn the_schedule_gives_the_delays() {
    let config = RetryConfig::builder()
        .max_attempts(4)
        .backoff(schedule())
        .build()
        .unwrap();
    let outcome = run(config, always(503)).await;
    assert_eq!(
        outcome.gaps(),
        [
            Duration::from_millis(300),
            Duration::from_millis(900),
            Duration::from_millis(2700)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn each_request_starts_the_schedule_afresh() {
    let config = RetryConfig::builder().backoff(schedule()).build().unwrap();
    let layer = evolution_retry::RetryLayer::new(config);
    for _ in 0..2 {
        let (service, mut handle) = crate::mocked(&layer);
        let outcome = crate::call(service, &mut handle, [status(503), status(200)]).await;
        assert_eq!(outcome.gaps(), [Duration::from_millis(300)]);
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_and_events_still_apply() {
    let events = Events::default();
    let config = RetryConfig::builder()
        .backoff(schedule())
        .observer(events.observer())
        .build()
        .unwrap();
    let outcome = run(config, [status_with(429, "retry-after", "2"), status(200)]).await;
    assert_eq!(outcome.gaps(), [Duration::from_secs(2)]);
    let event = events.take()[0];
    assert_eq!(
        event.reason,
        RetryReason::Status(http::StatusCode::TOO_MANY_REQUESTS)
    );
}
