//! Rows about IAM: down, slow, throttled, answering garbage or refusing the key.

use std::time::Duration;

use evolution_emulator::{Fault, Malformed, Route};
use evolution_token::{InvalidResponseReason, TokenError};
use serde_json::json;
use tokio::time::{Instant, sleep_until};

use crate::manager::wait_out_the_token_backoff;
use crate::{
    FETCH_ATTEMPTS, KEY, break_route, builder, client, echo, emulator, heal, says, seen,
    token_error,
};

/// IAM answers 503 to everything: the call fails with `Unavailable` after one refresh of 3 IAM
/// requests (the token manager's retries; the retry layer does not multiply them), no API
/// request is made, and the client recovers with IAM once the token
/// manager's failure backoff is over.
#[tokio::test(start_paused = true)]
async fn iam_down_at_start() {
    let emu = emulator().await;
    break_route(&emu, Route::Iam, Fault::status(503));
    let llm = client(&emu);

    let error = llm.invoke("hi").await.unwrap_err();
    match token_error(&error) {
        TokenError::Unavailable {
            status, attempts, ..
        } => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(error.is_retryable() && !error.is_auth(), "{error:?}");
    says(
        &error.to_string(),
        &[
            &format!("IAM at {} is unavailable", emu.auth_url()),
            "503 Service Unavailable",
            "after 3 attempt(s)",
            "try again later, or check the auth URL",
        ],
    );
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS, 0));
    assert_eq!(llm.stats().failed_refreshes, 1);
    assert_eq!(llm.stats().retries, 0);

    heal(&emu);
    wait_out_the_token_backoff().await;
    assert_eq!(llm.invoke("hi").await.unwrap(), echo(KEY, "hi"));
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS + 1, 1));
}

/// IAM goes down once a token is cached: calls keep succeeding with it through the
/// refresh-ahead window and the refresh buffer, while refreshes are retried with backoff (not
/// in a loop); only once the token has expired do calls fail, and they recover with IAM.
#[tokio::test(start_paused = true)]
async fn iam_down_during_refresh_with_a_valid_token() {
    let emu = emulator().await; // 3600 s tokens
    let llm = client(&emu);
    let start = Instant::now();
    llm.invoke("before").await.unwrap();
    assert_eq!(seen(&emu), (1, 1));
    break_route(&emu, Route::Iam, Fault::status(503));

    // Inside the refresh-ahead window: the background refresh starts at 3570 s minus a
    // jittered 135..270 s, so by 3440 s it has begun; the cached token still serves.
    sleep_until(start + Duration::from_secs(3440)).await;
    let mut ok = 1;
    for i in 0..20 {
        assert_eq!(
            llm.invoke(format!("ahead {i}")).await.unwrap(),
            echo(KEY, &format!("ahead {i}"))
        );
        ok += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (iam, chat) = seen(&emu);
    assert_eq!(chat, ok);
    // Each failed refresh is 3 IAM requests; they are spaced by a jittered 1, 2, 4, 8 s
    // backoff (at least half of it), so 20 s hold at most 6 of them, not one per call.
    let refreshes = (iam - 1) / FETCH_ATTEMPTS;
    assert_eq!((iam - 1) % FETCH_ATTEMPTS, 0, "{iam} IAM requests");
    assert!(
        (1..=6).contains(&refreshes),
        "{refreshes} refreshes in 20 s"
    );

    // Inside the refresh buffer (the last 30 s): callers would wait for a new token, but
    // IAM fails, so the still-valid token is served.
    sleep_until(start + Duration::from_secs(3580)).await;
    for i in 0..5 {
        llm.invoke(format!("buffer {i}")).await.unwrap();
        ok += 1;
    }
    let (iam_in_buffer, chat) = seen(&emu);
    assert_eq!(chat, ok);
    assert!(
        iam_in_buffer - iam <= 2 * FETCH_ATTEMPTS,
        "{iam} → {iam_in_buffer}"
    );
    assert!(llm.token_manager().info().has_token);

    // Expired: now the call fails, with one refresh (not retried by the retry layer) or,
    // if the token manager is still backing off after the last failed refresh, with that
    // refresh's error at once and no IAM request.
    sleep_until(start + Duration::from_secs(3601)).await;
    let error = llm.invoke("expired").await.unwrap_err();
    assert!(
        matches!(
            token_error(&error),
            TokenError::Unavailable { attempts: 3, .. }
        ),
        "{error:?}"
    );
    says(
        &error.to_string(),
        &["is unavailable", "after 3 attempt(s)"],
    );
    let (iam_expired, chat) = seen(&emu);
    assert_eq!(chat, ok, "no API request without a token");
    assert!(
        [iam_in_buffer, iam_in_buffer + FETCH_ATTEMPTS].contains(&iam_expired),
        "{iam_in_buffer} → {iam_expired}"
    );

    heal(&emu);
    wait_out_the_token_backoff().await;
    assert_eq!(llm.invoke("back").await.unwrap(), echo(KEY, "back"));
    assert_eq!(seen(&emu), (iam_expired + 1, ok + 1));
    assert_eq!(emu.stats().chat_status(401), 0, "no expired token was sent");
}

/// IAM answers after 30 s, beyond the 10 s fetch timeout: each IAM request is abandoned at
/// 10 s, the call fails with `TokenError::Timeout` after the one refresh's 3 of them.
#[tokio::test(start_paused = true)]
async fn iam_slow_beyond_the_fetch_timeout() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_secs(30));
    let llm = client(&emu);

    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    match token_error(&error) {
        TokenError::Timeout {
            timeout, attempts, ..
        } => {
            assert_eq!(*timeout, evolution_token::DEFAULT_FETCH_TIMEOUT);
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(error.is_retryable());
    says(
        &error.to_string(),
        &[
            &format!("IAM at {} did not answer within 10s", emu.auth_url()),
            "(3 attempt(s))",
            "check the network, or raise the fetch timeout",
        ],
    );
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS, 0));
    // 3 fetches of 10 s, plus at most 0.2 + 0.4 s of IAM backoff; no client backoff.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(30) && elapsed <= Duration::from_secs(31),
        "{elapsed:?}"
    );

    emu.set_latency(Route::Iam, Duration::ZERO);
    // Requests abandoned by the client are still in the emulator's hands; give them time.
    tokio::time::sleep(Duration::from_secs(30)).await;
    llm.invoke("hi").await.unwrap();
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS + 1, 1));
}

/// Bursts of 429 and 5xx from IAM: shorter than one refresh's 3 attempts, they are invisible;
/// longer, the call fails with the last status and no refresh starts before the token
/// manager's failure backoff ends, whoever asks; the next refresh after it goes on where the
/// burst left off.
#[tokio::test(start_paused = true)]
async fn iam_429_and_5xx_bursts() {
    // Within one refresh.
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::status(429).with_header("retry-after", "1"),
    );
    emu.push_fault(Route::Iam, Fault::status(500));
    assert_eq!(client(&emu).invoke("a").await.unwrap(), echo(KEY, "a"));
    assert_eq!(seen(&emu), (3, 1));
    assert_eq!(emu.stats().iam_status(429), 1);
    assert_eq!(emu.stats().iam_status(500), 1);

    // Across two refreshes: the first fails after 3 with the last status (the retry layer
    // does not start another); a call during the backoff gets that error at once; the
    // refresh after it gets the 429, then a token.
    let emu = emulator().await;
    for code in [502, 503, 429, 504] {
        emu.push_fault(Route::Iam, Fault::status(code));
    }
    let llm = client(&emu);
    let error = llm.invoke("b").await.unwrap_err();
    assert!(
        matches!(
            token_error(&error),
            TokenError::Unavailable { status, attempts: 3, .. } if status.as_u16() == 429
        ),
        "{error:?}"
    );
    says(
        &error.to_string(),
        &["429 Too Many Requests", "after 3 attempt(s)"],
    );
    assert_eq!(seen(&emu), (3, 0));
    assert_eq!(llm.stats().retries, 0);
    let again = llm.invoke("c").await.unwrap_err();
    assert!(
        matches!(
            token_error(&again),
            TokenError::Unavailable { status, .. } if status.as_u16() == 429
        ),
        "{again:?}"
    );
    assert_eq!(seen(&emu), (3, 0), "no refresh during the backoff");
    wait_out_the_token_backoff().await;
    assert_eq!(llm.invoke("d").await.unwrap(), echo(KEY, "d"));
    assert_eq!(seen(&emu), (5, 1));
    assert_eq!(llm.stats().failed_refreshes, 1);
    assert_eq!(llm.stats().successful_refreshes, 1);
}

/// Every kind of unusable 200 answer from IAM is an `InvalidResponse` naming what was wrong,
/// is not retried (one IAM request, no API request), and never echoes the body. Each case
/// waits out the token manager's failure backoff first.
#[tokio::test(start_paused = true)]
async fn iam_malformed_bodies() {
    let emu = emulator().await;
    let llm = client(&emu);
    let cases = [
        (
            Fault::malformed(Malformed::NotJson),
            InvalidResponseReason::NotJson,
        ),
        (
            Fault::malformed(Malformed::Empty),
            InvalidResponseReason::NotJson,
        ),
        (
            Fault::malformed(Malformed::Truncated),
            InvalidResponseReason::NotJson,
        ),
        (
            Fault::malformed(Malformed::MissingField),
            InvalidResponseReason::MissingAccessToken,
        ),
        (
            Fault::raw_body(200, "text/html", "<html>login</html>"),
            InvalidResponseReason::NotJson,
        ),
        (
            Fault::iam_body(json!(["evo_x"])),
            InvalidResponseReason::NotAnObject,
        ),
        (
            Fault::iam_body(json!({"access_token": 12345})),
            InvalidResponseReason::MissingAccessToken,
        ),
        (
            Fault::iam_body(json!({"access_token": "evo leaky"})),
            InvalidResponseReason::InvalidAccessToken,
        ),
        (
            Fault::iam_body(json!({"access_token": "evo_leaky", "expires_in": "soon"})),
            InvalidResponseReason::ExpiresInNotANumber,
        ),
        (
            Fault::iam_body(json!({"access_token": "evo_leaky", "expires_in": -1})),
            InvalidResponseReason::ExpiresInNotPositive,
        ),
    ];
    let count = cases.len() as u64;
    for (i, (fault, expected)) in cases.into_iter().enumerate() {
        wait_out_the_token_backoff().await;
        emu.push_fault(Route::Iam, fault);
        let error = llm.invoke("hi").await.unwrap_err();
        match token_error(&error) {
            TokenError::InvalidResponse { reason, .. } => assert_eq!(*reason, expected),
            other => panic!("case {i}: expected InvalidResponse, got {other:?}"),
        }
        assert!(
            !error.is_retryable() && !error.is_auth(),
            "case {i}: {error:?}"
        );
        let message = error.to_string();
        says(
            &message,
            &[
                &format!("IAM at {} sent an unusable token response", emu.auth_url()),
                &expected.to_string(),
                "check that the auth URL is the Cloud.ru IAM token endpoint",
            ],
        );
        assert!(
            !message.contains("evo_leaky") && !message.contains("evo leaky"),
            "{message}"
        );
        assert_eq!(seen(&emu), (i as u64 + 1, 0), "case {i}: not retried");
    }
    wait_out_the_token_backoff().await;
    assert_eq!(llm.invoke("ok").await.unwrap(), echo(KEY, "ok"));
    assert_eq!(seen(&emu), (count + 1, 1));
}

/// IAM 401 (wrong secret, disabled key) and 403: auth errors naming the key and what to check,
/// never retried, no API request. A failure holds refreshes back for the token manager's
/// backoff: each step waits it out.
#[tokio::test(start_paused = true)]
async fn iam_401_and_403() {
    let emu = emulator().await;

    let wrong = builder(&emu).secret("not-the-secret").build().unwrap();
    let error = wrong.invoke("hi").await.unwrap_err();
    assert!(
        matches!(token_error(&error), TokenError::InvalidCredentials { key_id } if &**key_id == KEY),
        "{error:?}"
    );
    assert!(error.is_auth() && !error.is_retryable());
    let message = error.to_string();
    says(
        &message,
        &[
            &format!("IAM rejected key id `{KEY}` (401 Unauthorized)"),
            "check the key id and the secret, and that the key is not deleted or disabled",
        ],
    );
    assert!(!message.contains("not-the-secret"), "{message}");
    assert_eq!(seen(&emu), (1, 0));
    assert_eq!(emu.stats().iam_status(401), 1);

    let llm = client(&emu);
    emu.disable_key(KEY);
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(token_error(&error), TokenError::InvalidCredentials { .. }),
        "{error:?}"
    );
    assert_eq!(seen(&emu), (2, 0));
    emu.enable_key(KEY);

    wait_out_the_token_backoff().await;
    emu.push_fault(Route::Iam, Fault::status(403));
    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(token_error(&error), TokenError::Forbidden { key_id } if &**key_id == KEY),
        "{error:?}"
    );
    assert!(error.is_auth() && !error.is_retryable());
    says(
        &error.to_string(),
        &[
            &format!("IAM refused key id `{KEY}` (403 Forbidden)"),
            "check that the key is active and its service account has access",
        ],
    );
    assert_eq!(seen(&emu), (3, 0));
    assert_eq!(llm.stats().auth_errors, 2);

    wait_out_the_token_backoff().await;
    assert_eq!(llm.invoke("ok").await.unwrap(), echo(KEY, "ok"));
    assert_eq!(seen(&emu), (4, 1));
}
