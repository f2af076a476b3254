//! A refresh task that dies (a panicking observer or store, its runtime shut down) leaves
//! no refresh "in flight" behind: its waiters learn what happened, it counts as a failed
//! refresh for the backoff, the next refresh after that runs, and the monitor never spins.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use evolution_emulator::{Fault, Route};
use evolution_token::{AbortReason, TokenError, TokenErrorKind, TokenEvent, TokenManagerBuilder};
use tokio::time::Instant;

use crate::{builder, emulator};

/// An observer that panics on `RefreshStarted` while `panics` is set, and counts them.
fn panicking_observer(builder: TokenManagerBuilder) -> (TokenManagerBuilder, Switch) {
    let switch = Switch::default();
    let observed = switch.clone();
    let builder = builder.observer(move |event: &TokenEvent| {
        if matches!(event, TokenEvent::RefreshStarted { .. }) {
            let started = observed.started.fetch_add(1, Ordering::Relaxed) + 1;
            // A cap, so that a manager that retries at once ends the test instead of
            // spinning forever.
            if observed.panics.load(Ordering::Relaxed) && started <= 50 {
                panic!("observer bug (on purpose)");
            }
        }
    });
    (builder, switch)
}

#[derive(Clone)]
struct Switch {
    panics: Arc<AtomicBool>,
    started: Arc<AtomicU64>,
}

impl Default for Switch {
    fn default() -> Self {
        Self {
            panics: Arc::new(AtomicBool::new(true)),
            started: Arc::new(AtomicU64::new(0)),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_observer_does_not_wedge_the_manager() {
    let emu = emulator().await;
    let (builder, switch) = panicking_observer(builder(&emu));
    let tokens = builder.build().unwrap();

    let error = tokens.get_token().await.unwrap_err();
    assert!(
        matches!(
            error,
            TokenError::Aborted {
                reason: AbortReason::Panicked
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
    let message = error.to_string();
    assert!(
        message.contains("the refresh task panicked")
            && message.contains("check the token observers and the token store"),
        "{message}"
    );
    assert!(
        !tokens.info().refresh_in_flight,
        "a dead refresh is in flight"
    );
    assert_eq!(emu.stats().iam_requests, 0);

    // The observer is fixed; the abort counted as a failure, whose backoff (1 s at most)
    // the next refresh waits out.
    switch.panics.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokens.get_token().await.unwrap();
    assert_eq!(emu.stats().iam_requests, 1);
    assert_eq!(switch.started.load(Ordering::Relaxed), 2);
}

/// The monitor after aborted refreshes: it waits out the backoff each time, so one minute
/// holds at most 8 attempts (backoffs of 0.5, 1, 2, 4, 8, 15, 15 s at the least).
#[tokio::test(start_paused = true)]
async fn the_monitor_does_not_spin_after_aborted_refreshes() {
    let emu = emulator().await;
    let (builder, switch) = panicking_observer(builder(&emu));
    let tokens = builder.build().unwrap();
    let _monitor = tokens.spawn_monitor();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let started = switch.started.load(Ordering::Relaxed);
    assert!(
        (6..=8).contains(&started),
        "{started} refreshes in a minute"
    );
    assert_eq!(emu.stats().iam_requests, 0);
}

/// The monitor after failed refreshes (IAM down): the same schedule, 3 IAM requests each
/// (the last refresh may still be running when the minute ends).
#[tokio::test(start_paused = true)]
async fn the_monitor_follows_the_backoff_while_iam_is_down() {
    let emu = emulator().await;
    emu.set_random_faults(vec![Fault::status(503)]);
    emu.set_fault_probability(1.0, 1, &[Route::Iam]);
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
    let _monitor = tokens.spawn_monitor();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let started = started.load(Ordering::Relaxed);
    let iam = emu.stats().iam_requests;
    assert!(
        (6..=8).contains(&started),
        "{started} refreshes in a minute"
    );
    assert!(
        iam > 3 * (started - 1) && iam <= 3 * started,
        "{iam} IAM requests for {started} refreshes"
    );
}

/// The runtime running a refresh shuts down mid-exchange: the caller waiting on another
/// runtime gets an error saying so, and the manager has no refresh in flight any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_shut_down_mid_refresh_does_not_wedge_the_manager() {
    let emu = emulator().await;
    emu.push_fault(Route::Iam, Fault::delay(Duration::from_secs(60)));
    let tokens = builder(&emu).build().unwrap();

    let victim = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    drop(victim.spawn({
        let tokens = tokens.clone();
        async move { tokens.get_token().await }
    }));
    let since = Instant::now();
    while emu.stats().iam_requests == 0 {
        assert!(since.elapsed() < Duration::from_secs(10), "no IAM request");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(tokens.info().refresh_in_flight);
    let waiter = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.get_token().await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    victim.shutdown_background();

    let error = waiter.await.unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            TokenError::Aborted {
                reason: AbortReason::RuntimeShutdown
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("the tokio runtime running it shut down"),
        "{error}"
    );
    assert!(
        !tokens.info().refresh_in_flight,
        "a dead refresh is in flight"
    );
    // The abort counts as a failure: until its backoff ends, callers get it at once.
    let again = tokens.get_token().await.unwrap_err();
    assert_eq!(again.kind(), TokenErrorKind::Aborted, "{again:?}");
    assert_eq!(emu.stats().iam_requests, 1);
}
