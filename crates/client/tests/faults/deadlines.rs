//! Rows about time limits: the per-attempt timeout and the caller's overall deadline.

use std::time::Duration;

use evolution_client::Error;
use evolution_emulator::{Fault, Route};
use tokio::time::Instant;

use crate::{ATTEMPTS, KEY, builder, echo, emulator, says, seen};

/// A server slower than `request_timeout` (5 s): each attempt is abandoned at 5 s and retried;
/// two slow answers are ridden out, a server that is always slow ends in `Error::Timeout`.
#[tokio::test(start_paused = true)]
async fn per_attempt_timeout() {
    let emu = emulator().await;
    let llm = builder(&emu)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();

    emu.push_fault(Route::Chat, Fault::delay(Duration::from_secs(120)));
    emu.push_fault(Route::Chat, Fault::delay(Duration::from_secs(120)));
    let started = Instant::now();
    assert_eq!(
        llm.invoke("slow twice").await.unwrap(),
        echo(KEY, "slow twice")
    );
    let elapsed = started.elapsed();
    // Two timeouts of 5 s and two backoffs of at most 1 s and 2 s.
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed <= Duration::from_secs(13),
        "{elapsed:?}"
    );
    assert_eq!(seen(&emu), (1, 3));

    emu.set_latency(Route::Chat, Duration::from_secs(120));
    let started = Instant::now();
    let error = llm.invoke("always slow").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(limit) if limit == Duration::from_secs(5)),
        "{error:?}"
    );
    assert!(error.is_retryable());
    says(
        &error.to_string(),
        &[
            "no answer from the Evolution API within 5s",
            "the server is slow or unreachable; raise the timeout or try again",
        ],
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(15) && elapsed <= Duration::from_secs(18),
        "{elapsed:?}"
    );
    assert_eq!(seen(&emu), (1, 3 + ATTEMPTS));
    assert_eq!(llm.stats().retries, 2 + (ATTEMPTS - 1));
}

/// `total_timeout` bounds the whole call, retries and token fetch included: the caller gets
/// `Error::Timeout(total)` at the deadline, never later.
#[tokio::test(start_paused = true)]
async fn overall_deadline() {
    let total = Duration::from_secs(10);

    // One attempt that would take 120 s.
    let emu = emulator().await;
    let llm = builder(&emu).total_timeout(total).build().unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.set_latency(Route::Chat, Duration::from_secs(120));
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(limit) if limit == total),
        "{error:?}"
    );
    assert!(error.is_retryable());
    says(
        &error.to_string(),
        &[
            "no answer from the Evolution API within 10s",
            "raise the timeout",
        ],
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= total && elapsed <= total + Duration::from_millis(5),
        "{elapsed:?}"
    );
    assert_eq!(seen(&emu), (1, 1));

    // Attempts of 4 s with retries: the retries stop or are cut at the deadline.
    let emu = emulator().await;
    let llm = builder(&emu)
        .total_timeout(total)
        .request_timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.set_latency(Route::Chat, Duration::from_secs(120));
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(limit) if limit == total),
        "{error:?}"
    );
    let elapsed = started.elapsed();
    assert!(elapsed <= total + Duration::from_millis(5), "{elapsed:?}");
    let (iam, chat) = seen(&emu);
    assert_eq!(iam, 1);
    assert!((2..=ATTEMPTS).contains(&chat), "{chat} attempts in 10 s");

    // IAM slower than the deadline: the deadline still holds.
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_secs(8));
    let llm = builder(&emu)
        .total_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(limit) if limit == Duration::from_secs(5)),
        "{error:?}"
    );
    assert!(started.elapsed() <= Duration::from_secs(5) + Duration::from_millis(5));
    assert_eq!(seen(&emu), (1, 0));
    // The refresh was not cancelled with the caller: it finishes and the next call uses it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    llm.invoke("later").await.unwrap();
    assert_eq!(seen(&emu), (1, 1));
}

/// With `total_timeout` set, a call that fails because every *attempt* timed out names the
/// attempt limit, not the total: three 2 s attempts fail within about 7 s and the error must
/// send the user to `request_timeout`. (Both timeouts fail with the same `Elapsed` type; the
/// client tells them apart by the time spent.)
#[tokio::test(start_paused = true)]
async fn per_attempt_timeouts_under_a_total_timeout_name_the_attempt_limit() {
    let emu = emulator().await;
    let llm = builder(&emu)
        .request_timeout(Duration::from_secs(2))
        .total_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.set_latency(Route::Chat, Duration::from_secs(120));
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(seen(&emu), (1, ATTEMPTS));
    assert!(
        matches!(error, Error::Timeout(limit) if limit == Duration::from_secs(2)),
        "{error:?}: {error}"
    );
}
