use std::time::{Duration, SystemTime};

use evolution_retry::{
    DEFAULT_MAX_RETRY_AFTER, Jitter, LongRetryAfter, RetryAfterTooLong, RetryConfig,
};

use crate::{Events, run, status, status_with};

/// No jitter, 1 s base: the backoff before the first retry is exactly 1 s.
fn builder() -> evolution_retry::RetryConfigBuilder {
    RetryConfig::builder().jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_seconds() {
    let outcome = run(
        builder().build().unwrap(),
        [status_with(429, "retry-after", "5"), status(200)],
    )
    .await;
    assert_eq!(outcome.status(), 200);
    assert_eq!(outcome.gaps(), [Duration::from_secs(5)]);
}

#[tokio::test(start_paused = true)]
async fn backoff_wins_when_longer_than_retry_after() {
    let config = builder()
        .base_delay(Duration::from_secs(3))
        .build()
        .unwrap();
    let outcome = run(config, [status_with(503, "retry-after", "1"), status(200)]).await;
    assert_eq!(outcome.gaps(), [Duration::from_secs(3)]);
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_http_date_on_the_injected_clock() {
    // The wall clock says 2023-11-14 22:13:20; the server asks to come back 7 s later.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
    let config = builder().clock(move || now).build().unwrap();
    let outcome = run(
        config,
        [status_with(503, "retry-after", &date), status(200)],
    )
    .await;
    assert_eq!(outcome.gaps(), [Duration::from_secs(7)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_date_in_the_past_leaves_the_backoff() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let date = httpdate::fmt_http_date(now - Duration::from_secs(60));
    let config = builder().clock(move || now).build().unwrap();
    let outcome = run(
        config,
        [status_with(503, "retry-after", &date), status(200)],
    )
    .await;
    assert_eq!(outcome.gaps(), [Duration::from_secs(1)]);
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after_ms() {
    let outcome = run(
        builder().build().unwrap(),
        [status_with(429, "retry-after-ms", "2500"), status(200)],
    )
    .await;
    assert_eq!(outcome.gaps(), [Duration::from_millis(2500)]);
}

/// The server asks for an hour, beyond `max_retry_after` (60 s): no retry at all, no wait,
/// and the answer says how long the server asked for.
#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_is_not_retried() {
    let events = Events::default();
    let config = builder().observer(events.observer()).build().unwrap();
    for (name, value) in [("retry-after", "3600"), ("retry-after-ms", "3600000")] {
        let outcome = run(config.clone(), [status_with(429, name, value), status(200)]).await;
        assert_eq!(outcome.attempts.len(), 1, "{name}");
        assert_eq!(outcome.returned, outcome.attempts[0], "no wait");
        let response = outcome.result.unwrap();
        assert_eq!(response.status(), 429);
        let too_long = response.extensions().get::<RetryAfterTooLong>().unwrap();
        assert_eq!(too_long.retry_after(), Duration::from_secs(3600));
        assert_eq!(too_long.max_retry_after(), DEFAULT_MAX_RETRY_AFTER);
    }
    assert!(events.take().is_empty());

    // Even on the last attempt, the answer says how long the server asked for.
    let outcome = run(
        builder().max_attempts(1).build().unwrap(),
        [status_with(503, "retry-after", "61")],
    )
    .await;
    let response = outcome.result.unwrap();
    assert!(response.extensions().get::<RetryAfterTooLong>().is_some());

    // Up to the cap, the wait is made.
    let outcome = run(config, [status_with(429, "retry-after", "60"), status(200)]).await;
    assert_eq!(outcome.gaps(), [Duration::from_secs(60)]);
}

/// `LongRetryAfter::RetryEarly`: the wait is cut to the cap and the request retried.
#[tokio::test(start_paused = true)]
async fn retry_early_cuts_the_wait_to_the_cap() {
    let events = Events::default();
    let config = builder()
        .long_retry_after(LongRetryAfter::RetryEarly)
        .observer(events.observer())
        .build()
        .unwrap();
    let outcome = run(
        config,
        [status_with(503, "retry-after", "3600"), status(200)],
    )
    .await;
    assert_eq!(outcome.gaps(), [DEFAULT_MAX_RETRY_AFTER]);
    assert_eq!(events.take()[0].delay, Duration::from_secs(60));
    let response = outcome.result.unwrap();
    assert!(response.extensions().get::<RetryAfterTooLong>().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_deadline_returns_at_once() {
    let config = builder().deadline(Duration::from_secs(10)).build().unwrap();
    let outcome = run(config, [status_with(429, "retry-after", "30"), status(200)]).await;
    assert_eq!(outcome.status(), 429, "the last answer, not a timeout");
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(outcome.returned, outcome.attempts[0], "no sleep at all");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_time_already_spent() {
    // The first attempt takes 8 s; a 3 s wait would end at 11 s, past the 10 s deadline.
    let config = builder().deadline(Duration::from_secs(10)).build().unwrap();
    let (service, mut handle) = crate::mocked(&evolution_retry::RetryLayer::new(config));
    let started = tokio::time::Instant::now();
    let call = tokio::spawn(tower::ServiceExt::oneshot(service, crate::request()));
    let (_, reply) = handle.next_request().await.unwrap();
    tokio::time::advance(Duration::from_secs(8)).await;
    reply.send_response(
        http::Response::builder()
            .status(503)
            .header("retry-after", "3")
            .body(bytes::Bytes::new())
            .unwrap(),
    );
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(started.elapsed(), Duration::from_secs(8));
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_fits_the_deadline_is_made() {
    let config = builder().deadline(Duration::from_secs(10)).build().unwrap();
    let outcome = run(config, [status_with(429, "retry-after", "9"), status(200)]).await;
    assert_eq!(outcome.status(), 200);
    assert_eq!(outcome.gaps(), [Duration::from_secs(9)]);
}
