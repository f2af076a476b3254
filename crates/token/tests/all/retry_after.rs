//! IAM's own `Retry-After` on 429 and 503: the next IAM request waits for it.

use std::time::{Duration, SystemTime};

use evolution_emulator::{Fault, Route};
use evolution_token::{MAX_FETCH_RETRY_AFTER, TokenError, TokenErrorKind};
use tokio::time::Instant;

use crate::{emulator, manager};

/// IAM answers 503 asking for 7 s: the second request goes 7 s later (the fetch's own
/// backoff is at most 200 ms there), and gets the token.
#[tokio::test(start_paused = true)]
async fn retry_after_seconds_spaces_iam_requests() {
    for code in [503, 429] {
        let emu = emulator().await;
        emu.push_fault(
            Route::Iam,
            Fault::status(code).with_header("retry-after", "7"),
        );
        let tokens = manager(&emu);
        let started = Instant::now();
        tokens.get_token().await.unwrap();
        let gap = started.elapsed();
        assert!(
            (Duration::from_secs(7)..Duration::from_millis(7_100)).contains(&gap),
            "{code}: {gap:?}"
        );
        assert_eq!(emu.stats().iam_requests, 2);
    }
}

/// The same as an HTTP-date, about 8 s ahead of the wall clock.
#[tokio::test(start_paused = true)]
async fn retry_after_as_a_date_spaces_iam_requests() {
    let emu = emulator().await;
    #[allow(clippy::disallowed_methods)] // the date is read against the wall clock
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(8));
    emu.push_fault(
        Route::Iam,
        Fault::status(503).with_header("retry-after", &date),
    );
    let tokens = manager(&emu);
    let started = Instant::now();
    tokens.get_token().await.unwrap();
    let gap = started.elapsed();
    // Whole seconds on the wire: 7 to 8 s from now.
    assert!(
        (Duration::from_secs(6)..=Duration::from_secs(8)).contains(&gap),
        "{gap:?}"
    );
    assert_eq!(emu.stats().iam_requests, 2);
}

/// IAM asks for longer than a token request waits: no early retry into another 503, but
/// a `Throttled` error at once carrying the server's wait.
#[tokio::test(start_paused = true)]
async fn retry_after_above_the_cap_fails_at_once_with_the_wait() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::status(503).with_header("retry-after", "600"),
    );
    let tokens = manager(&emu);
    let started = Instant::now();
    let error = tokens.get_token().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    match &error {
        TokenError::Throttled {
            status,
            retry_after,
            attempts,
            ..
        } => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(*retry_after, Duration::from_secs(600));
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(error.kind(), TokenErrorKind::Throttled);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(600)));
    assert!(error.is_transient(), "later may work: {error:?}");
    let message = error.to_string();
    for part in [
        &format!("IAM at {}", emu.auth_url()),
        "asked to wait 600s",
        &format!("{MAX_FETCH_RETRY_AFTER:?}"),
        "try again after that",
    ] {
        assert!(message.contains(part), "{part:?} missing: {message}");
    }
    assert_eq!(emu.stats().iam_requests, 1);
}

/// A `Retry-After` that does not parse is ignored: the fetch's own backoff applies.
#[tokio::test(start_paused = true)]
async fn an_unparsable_retry_after_is_ignored() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::status(503).with_header("retry-after", "soon"),
    );
    let started = Instant::now();
    manager(&emu).get_token().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(emu.stats().iam_requests, 2);
}
