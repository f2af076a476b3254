//! The manager's failure backoff gates every refresh, whatever triggers it: while it runs,
//! callers without a usable token fail at once with the last error, and IAM sees only the
//! requests of the refreshes the backoff lets through.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use evolution_emulator::{Fault, Route};
use evolution_token::{DEFAULT_FETCH_ATTEMPTS, TokenError, TokenEvent};
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::{builder, emulator};

/// IAM answers 503 to everything.
fn break_iam(emu: &evolution_emulator::Emulator) {
    emu.set_random_faults(vec![Fault::status(503)]);
    emu.set_fault_probability(1.0, 1, &[Route::Iam]);
}

/// 64 callers, each calling again 50 ms after every failure, for 10 s of IAM outage with an
/// empty cache: IAM sees only the refreshes the backoff schedule lets through, 3 requests
/// each (`DEFAULT_FETCH_ATTEMPTS`), and every other call fails at once with the last error.
///
/// The schedule: a failed refresh lasts 0.3..0.6 s (its own 200 and 400 ms backoffs, jittered
/// over their later half); the manager then waits 1, 2, 4, 8 s … (capped at 30 s), jittered
/// over the later half. Refresh k starts at the earliest at 0, 0.8, 2.1, 4.4, 8.7 s and at the
/// latest at 0, 1.6 (+50 ms), 4.2 (+0.1 s), 8.8 (+0.15 s), 17.4 s: 10 s hold 4 or 5 refreshes.
#[tokio::test(start_paused = true)]
async fn iam_outage_with_64_callers_costs_only_the_backoff_schedule() {
    let emu = emulator().await;
    break_iam(&emu);
    let started = Arc::new(AtomicU64::new(0));
    let counter = started.clone();
    let tokens = builder(&emu)
        .observer(move |event: &TokenEvent| {
            if matches!(event, TokenEvent::RefreshStarted { .. }) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();

    let end = Instant::now() + Duration::from_secs(10);
    let callers = (0..64).map(|_| {
        let tokens = tokens.clone();
        async move {
            let (mut calls, mut at_once) = (0u64, 0u64);
            while Instant::now() < end {
                let called = Instant::now();
                let error = tokens.get_token().await.unwrap_err();
                assert!(
                    matches!(error, TokenError::Unavailable { attempts: 3, .. }),
                    "{error:?}"
                );
                assert!(error.to_string().contains("is unavailable"), "{error}");
                calls += 1;
                if called.elapsed().is_zero() {
                    at_once += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (calls, at_once)
        }
    });
    let per_caller = join_all(callers).await;

    let refreshes = started.load(Ordering::Relaxed);
    let iam = emu.stats().iam_requests;
    assert_eq!(
        iam,
        refreshes * u64::from(DEFAULT_FETCH_ATTEMPTS),
        "{refreshes} refreshes"
    );
    assert!(
        (4..=5).contains(&refreshes),
        "{refreshes} refreshes in 10 s"
    );
    // Most calls found the backoff running and failed without waiting.
    let calls: u64 = per_caller.iter().map(|(calls, _)| calls).sum();
    let at_once: u64 = per_caller.iter().map(|(_, at_once)| at_once).sum();
    assert!(
        at_once * 2 > calls,
        "{at_once} of {calls} calls failed at once"
    );
}

/// The backoff grows to its cap (30 s) and no further: after a long outage, refreshes come
/// every 15..30 s, and once IAM is back the first refresh after the backoff succeeds and
/// clears it.
#[tokio::test(start_paused = true)]
async fn backoff_grows_to_its_cap_and_clears_on_success() {
    let emu = emulator().await;
    break_iam(&emu);
    let tokens = builder(&emu).fetch_attempts(1).build().unwrap();
    // 1 + 2 + 4 + 8 + 16 s at most before the cap: 10 minutes is well into it.
    // Stops right after a failed refresh, so that a backoff of 15..30 s runs then.
    let end = Instant::now() + Duration::from_secs(600);
    let mut starts = Vec::new();
    loop {
        let before = emu.stats().iam_requests;
        tokens.get_token().await.unwrap_err();
        if emu.stats().iam_requests > before {
            starts.push(Instant::now());
            if Instant::now() >= end {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gap after the n-th failure is its backoff (plus up to one 100 ms poll); from the
    // 6th on, 2⁵ s is past the cap.
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 20, "{gaps:?}");
    let capped = &gaps[5..];
    assert!(
        capped
            .iter()
            .all(|gap| *gap >= Duration::from_secs(15) && *gap <= Duration::from_millis(30_200)),
        "{gaps:?}"
    );

    heal(&emu);
    // Still backing off: the last error, at once, no IAM request.
    let iam = emu.stats().iam_requests;
    let error = tokens.get_token().await.unwrap_err();
    assert!(matches!(error, TokenError::Unavailable { .. }), "{error:?}");
    assert_eq!(emu.stats().iam_requests, iam);
    tokio::time::sleep(Duration::from_secs(30)).await;
    tokens.get_token().await.unwrap();
    tokens.invalidate();
    // A success cleared the backoff: the next refresh runs at once.
    tokens.get_token().await.unwrap();
    assert_eq!(emu.stats().iam_requests, iam + 2);
}

fn heal(emu: &evolution_emulator::Emulator) {
    emu.set_fault_probability(0.0, 1, &[]);
}

/// Every trigger is gated: after a failed first fetch, an invalidation does not start a
/// refresh before the backoff ends, nor does the monitor.
#[tokio::test(start_paused = true)]
async fn invalidation_and_monitor_wait_out_the_backoff() {
    let emu = emulator().await;
    let tokens = builder(&emu).fetch_attempts(1).build().unwrap();
    let token = tokens.get_token().await.unwrap();
    break_iam(&emu);
    assert!(tokens.invalidate_if_current(&token));
    tokens.get_token().await.unwrap_err();
    assert_eq!(emu.stats().iam_requests, 2);

    // Within the first backoff (0.5..1 s): neither a caller nor the monitor calls IAM.
    let _monitor = tokens.spawn_monitor();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let error = tokens.get_token().await.unwrap_err();
        assert!(matches!(error, TokenError::Unavailable { .. }), "{error:?}");
    }
    assert_eq!(emu.stats().iam_requests, 2);
    // Over a minute the monitor and callers together follow the schedule: backoffs of 1, 2,
    // 4, 8, 16, 30 s at most and half of each at least, so 5 to 7 more refreshes.
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tokens.get_token().await;
    }
    let more = emu.stats().iam_requests - 2;
    assert!((5..=7).contains(&more), "{more} refreshes in a minute");
}

/// IAM asks (`Retry-After: 60`) for longer than a fetch waits: the fetch stops at once with
/// `Throttled`, and the manager's backoff lasts those 60 s, whoever asks: no refresh starts
/// before them, and the first one after them gets a token.
#[tokio::test(start_paused = true)]
async fn iams_retry_after_holds_back_every_refresh() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::status(429).with_header("retry-after", "60"),
    );
    let tokens = builder(&emu).build().unwrap();
    let started = Instant::now();
    let error = tokens.get_token().await.unwrap_err();
    assert!(matches!(error, TokenError::Throttled { .. }), "{error:?}");
    assert_eq!(emu.stats().iam_requests, 1);

    // Every 5 s for most of a minute: the last error at once, no IAM request.
    while started.elapsed() < Duration::from_secs(58) {
        let again = tokens.get_token().await.unwrap_err();
        assert!(matches!(again, TokenError::Throttled { .. }), "{again:?}");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(
        emu.stats().iam_requests,
        1,
        "a refresh started inside IAM's Retry-After"
    );

    tokio::time::sleep_until(started + Duration::from_secs(61)).await;
    tokens.get_token().await.unwrap();
    assert_eq!(emu.stats().iam_requests, 2);
}
