//! In-process limits under tokio's paused clock.

use std::num::NonZeroU32;
use std::time::Duration;

use tokio::time::advance;

use super::*;

fn limits(rpm: u32, tpm: u32) -> RateLimits {
    RateLimits::new(NonZeroU32::new(rpm), NonZeroU32::new(tpm))
}

fn limited(kind: LimitKind, retry_in: Duration) -> Result<(), Limited> {
    Err(Limited { kind, retry_in })
}

#[tokio::test(start_paused = true)]
async fn rpm_admits_a_minute_at_once_then_one_every_two_seconds() {
    let limits = limits(30, 0);
    for _ in 0..30 {
        limits.acquire(0).await.unwrap();
    }
    let refused = limited(LimitKind::Requests, Duration::from_secs(2));
    assert_eq!(limits.acquire(0).await, refused);

    advance(Duration::from_secs(2)).await;
    limits.acquire(0).await.unwrap();
    assert_eq!(limits.acquire(0).await, refused);

    // Idle for a minute: the whole burst again, no more.
    advance(Duration::from_secs(60)).await;
    for _ in 0..30 {
        limits.acquire(0).await.unwrap();
    }
    assert!(limits.acquire(0).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn tpm_refuses_until_the_tokens_refill() {
    let limits = limits(0, 1_000);
    limits.acquire(400).await.unwrap();
    limits.acquire(400).await.unwrap();
    // 200 tokens short, at 1000 a minute: 12 s.
    let refused = limited(LimitKind::Tokens, Duration::from_secs(12));
    assert_eq!(limits.acquire(400).await, refused);
    advance(Duration::from_secs(11)).await;
    assert!(limits.acquire(400).await.is_err());
    advance(Duration::from_secs(1)).await;
    limits.acquire(400).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_token_refusal_takes_no_request() {
    let limits = limits(2, 100);
    limits.acquire(100).await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            limits.acquire(50).await.unwrap_err().kind,
            LimitKind::Tokens
        );
    }
    limits.acquire(0).await.unwrap();
    assert_eq!(
        limits.acquire(0).await.unwrap_err().kind,
        LimitKind::Requests
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_refusal_gives_its_tokens_back() {
    let limits = limits(2, 100);
    limits.acquire(0).await.unwrap();
    limits.acquire(0).await.unwrap();
    // The 100 tokens are taken before the request limit refuses...
    assert_eq!(
        limits.acquire(100).await,
        limited(LimitKind::Requests, Duration::from_secs(30))
    );
    // ...and credited: after 30 s only 50 tokens refilled, yet 100 fit.
    advance(Duration::from_secs(30)).await;
    limits.acquire(100).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_over_estimate_is_credited_to_the_next_call_once() {
    let limits = limits(0, 1_000);
    limits.acquire(1_000).await.unwrap();
    limits.settle(1_000, 200);
    // 800 credited: the next 800 cost nothing, though the bucket is empty.
    limits.acquire(800).await.unwrap();
    assert!(limits.acquire(1).await.is_err());

    // A credit beyond the next call's tokens is dropped, not banked.
    limits.settle(1_000, 0);
    limits.acquire(10).await.unwrap();
    assert_eq!(
        limits.acquire(10).await.unwrap_err().kind,
        LimitKind::Tokens
    );
}

#[tokio::test(start_paused = true)]
async fn an_under_estimate_is_charged_to_the_next_call() {
    let limits = limits(0, 1_000);
    limits.acquire(100).await.unwrap();
    limits.settle(100, 600);
    // 500 owed: 500 + 500 is 100 more than the 900 left, 6 s at 1000 a minute.
    assert_eq!(
        limits.acquire(500).await,
        limited(LimitKind::Tokens, Duration::from_secs(6))
    );
    // The refused call kept the debt for the next one.
    advance(Duration::from_secs(6)).await;
    limits.acquire(500).await.unwrap();
    assert!(limits.acquire(1).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_call_larger_than_the_tpm_waits_for_a_full_bucket_and_empties_it() {
    let limits = limits(0, 1_000);
    limits.acquire(5_000).await.unwrap();
    assert_eq!(
        limits.acquire(1).await,
        limited(LimitKind::Tokens, Duration::from_millis(60))
    );
    advance(Duration::from_secs(30)).await;
    assert_eq!(
        limits.acquire(5_000).await,
        limited(LimitKind::Tokens, Duration::from_secs(30))
    );
    advance(Duration::from_secs(30)).await;
    limits.acquire(5_000).await.unwrap();
    // A debt past the whole TPM is bounded the same way.
    advance(Duration::from_secs(60)).await;
    limits.settle(0, u32::MAX);
    limits.acquire(u32::MAX).await.unwrap();
    assert!(limits.acquire(1).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn without_limits_everything_passes() {
    let limits = RateLimits::new(None, None);
    assert!(!limits.counts_tokens());
    for _ in 0..10_000 {
        limits.acquire(u32::MAX).await.unwrap();
    }
    limits.settle(0, u32::MAX);

    // An RPM alone ignores tokens and corrections.
    let rpm_only = RateLimits::new(NonZeroU32::new(1), None);
    assert!(!rpm_only.counts_tokens());
    rpm_only.settle(0, u32::MAX);
    rpm_only.acquire(u32::MAX).await.unwrap();
    assert_eq!(
        rpm_only.acquire(0).await.unwrap_err().kind,
        LimitKind::Requests
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_buckets_and_the_carry() {
    let limits = limits(0, 100);
    let clone = limits.clone();
    limits.acquire(100).await.unwrap();
    assert!(clone.acquire(1).await.is_err());
    clone.settle(100, 0);
    limits.acquire(100).await.unwrap();
}

#[test]
fn kinds_name_their_labels_and_debug_shows_the_limits() {
    assert_eq!(LimitKind::Requests.as_str(), "rpm");
    assert_eq!(LimitKind::Tokens.as_str(), "tpm");
    let limits = limits(30, 1_000);
    assert_eq!(limits.rpm(), NonZeroU32::new(30));
    assert_eq!(limits.tpm(), NonZeroU32::new(1_000));
    assert!(limits.counts_tokens());
    let debug = format!("{limits:?}");
    assert!(debug.contains("rpm: Some(30)"), "{debug}");
    assert!(debug.contains("tpm: Some(1000)"), "{debug}");
}
