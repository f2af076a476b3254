use evolution_retry::RetryConfig;

use crate::{always, run, status};

#[tokio::test(start_paused = true)]
async fn recovers_after_transient_failures() {
    let outcome = run(
        RetryConfig::default(),
        [status(503), status(503), status(200)],
    )
    .await;
    assert_eq!(outcome.status(), 200);
    assert_eq!(outcome.attempts.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn stops_after_max_attempts_with_the_last_answer() {
    let outcome = run(RetryConfig::default(), always(503)).await;
    assert_eq!(outcome.attempts.len(), 3, "DEFAULT_MAX_ATTEMPTS");
    assert_eq!(outcome.status(), 503);
    // No wait after the last attempt: the answer comes back at once.
    assert_eq!(outcome.returned, *outcome.attempts.last().unwrap());

    let config = RetryConfig::builder().max_attempts(5).build().unwrap();
    assert_eq!(run(config, always(503)).await.attempts.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retries() {
    let config = RetryConfig::builder().max_attempts(1).build().unwrap();
    let outcome = run(config, always(503)).await;
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(outcome.status(), 503);
}

#[tokio::test(start_paused = true)]
async fn success_is_not_retried() {
    for code in [200, 201, 204, 304] {
        let outcome = run(RetryConfig::default(), always(code)).await;
        assert_eq!(outcome.attempts.len(), 1, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn default_backoff_waits_grow_and_stay_under_the_ceiling() {
    let outcome = run(
        RetryConfig::builder().max_attempts(4).build().unwrap(),
        always(503),
    )
    .await;
    let gaps = outcome.gaps();
    assert_eq!(gaps.len(), 3);
    // Full jitter: the n-th wait is below 1 s × 2ⁿ (plus the timer's 1 ms rounding).
    for (n, gap) in gaps.iter().enumerate() {
        let ceiling = std::time::Duration::from_secs(1 << n);
        assert!(
            *gap <= ceiling + std::time::Duration::from_millis(1),
            "{n}: {gap:?}"
        );
    }
}
