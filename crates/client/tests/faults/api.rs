//! Rows about the inference API's error statuses: 401, 403, 429 with `Retry-After`, 5xx.

use std::time::{Duration, SystemTime};

use evolution_client::Error;
use evolution_emulator::{Fault, Route};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::{ATTEMPTS, KEY, break_route, client, echo, emulator, heal, says, seen};

/// The `Error::Api` parts, or a panic naming what came instead.
#[track_caller]
fn api_error(error: &Error) -> (u16, &str, Option<&str>) {
    match error {
        Error::Api {
            status,
            message,
            code,
        } => (status.as_u16(), message, code.as_deref()),
        other => panic!("expected Error::Api, got {other:?}"),
    }
}

/// A revoked token is answered 401 once: the auth layer fetches a new token and resends,
/// invisibly (2 IAM, 2 API requests, one of them 401).
#[tokio::test(start_paused = true)]
async fn api_401_once_for_a_revoked_token() {
    let emu = emulator().await;
    let llm = client(&emu);
    llm.invoke("first").await.unwrap();
    let token = llm.token_manager().get_token().await.unwrap();
    assert!(emu.revoke_token(token.secret().expose_secret()));

    assert_eq!(llm.invoke("second").await.unwrap(), echo(KEY, "second"));
    assert_eq!(seen(&emu), (2, 3));
    assert_eq!(emu.stats().chat_status(401), 1);
    assert_eq!(
        llm.stats().retries,
        0,
        "the resend is the auth layer's, not a retry"
    );
    assert_eq!(llm.stats().auth_errors, 0);
}

/// The API answers 401 whatever the token: one refresh and resend, then the 401 is the
/// caller's, not retried, with a hint to check the key's permissions.
#[tokio::test(start_paused = true)]
async fn api_401_always() {
    let emu = emulator().await;
    break_route(
        &emu,
        Route::Chat,
        Fault::status(401).with_message("invalid access token"),
    );
    let llm = client(&emu);
    let error = llm.invoke("hi").await.unwrap_err();
    let (status, message, code) = api_error(&error);
    assert_eq!(
        (status, message, code),
        (401, "invalid access token", Some("injected_fault"))
    );
    assert!(error.is_auth() && !error.is_retryable());
    says(
        &error.to_string(),
        &[
            "the Evolution API answered 401 Unauthorized: invalid access token",
            "the token was rejected even after a refresh: check the key's permissions",
        ],
    );
    assert_eq!(seen(&emu), (2, 2), "one refresh and one resend, then stop");
    assert_eq!(llm.stats().auth_errors, 1);

    // 64 concurrent calls rejected the same way: one refresh between them, not 64 (only the
    // first 401 for a token invalidates it), so a key without permission cannot storm IAM.
    let calls = (0..64).map(|i| {
        let llm = llm.clone();
        tokio::spawn(async move { llm.invoke(format!("q{i}")).await })
    });
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(
            result.unwrap().unwrap_err().status().map(|s| s.as_u16()),
            Some(401)
        );
    }
    let (iam, chat) = seen(&emu);
    assert_eq!(chat, 2 + 128, "each call: one request and one resend");
    assert!(iam <= 2 + 2, "{iam} IAM requests for 64 rejected calls");

    heal(&emu);
    llm.invoke("ok").await.unwrap();
    assert_eq!(seen(&emu), (iam, chat + 1));
}

/// 403 is not an expiry: no refresh, no resend, no retry.
#[tokio::test(start_paused = true)]
async fn api_403() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(403).with_message("model demo-model is not allowed for this project"),
    );
    let llm = client(&emu);
    let error = llm.invoke("hi").await.unwrap_err();
    let (status, message, _) = api_error(&error);
    assert_eq!(status, 403);
    assert_eq!(message, "model demo-model is not allowed for this project");
    assert!(error.is_auth() && !error.is_retryable());
    says(
        &error.to_string(),
        &[
            "the Evolution API answered 403 Forbidden",
            "the key may not use this model or project: check its service account roles",
        ],
    );
    assert_eq!(seen(&emu), (1, 1));
    assert_eq!(llm.stats().successful_refreshes, 1);
}

/// 429 with `Retry-After` in seconds and as an HTTP-date: the retry waits at least that long;
/// a 429 that persists ends, after 3 attempts, in a rate-limit error.
#[tokio::test(start_paused = true)]
async fn api_429_with_retry_after() {
    let emu = emulator().await;
    let llm = client(&emu);
    llm.token_manager().get_token().await.unwrap();

    // Seconds: longer than the first backoff (at most 1 s), so it is what the client waits.
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "7"),
    );
    let started = Instant::now();
    assert_eq!(llm.invoke("s").await.unwrap(), echo(KEY, "s"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert_eq!(seen(&emu), (1, 2));

    // An HTTP-date 10 s from now (wall clock; whole seconds, so 9 to 10 s of it remain).
    #[allow(clippy::disallowed_methods)] // the header is wall-clock time by definition
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(10));
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", &date),
    );
    let started = Instant::now();
    assert_eq!(llm.invoke("d").await.unwrap(), echo(KEY, "d"));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited <= Duration::from_secs(11),
        "{waited:?} for Retry-After: {date}"
    );
    assert_eq!(seen(&emu), (1, 4));

    // Always 429.
    break_route(
        &emu,
        Route::Chat,
        Fault::status(429)
            .with_header("retry-after", "2")
            .with_message("rate limit exceeded"),
    );
    let started = Instant::now();
    let error = llm.invoke("x").await.unwrap_err();
    let (status, message, _) = api_error(&error);
    assert_eq!((status, message), (429, "rate limit exceeded"));
    assert!(error.is_retryable() && !error.is_auth());
    says(
        &error.to_string(),
        &[
            "the Evolution API answered 429 Too Many Requests: rate limit exceeded",
            "rate limited: slow down or retry later",
        ],
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "two waits of 2 s"
    );
    assert_eq!(seen(&emu), (1, 4 + ATTEMPTS));
    assert_eq!(emu.stats().chat_status(429), 2 + ATTEMPTS);
}

/// 500, 502, 503 and 504: one is retried to success; a persistent one ends after 3 attempts
/// in an `Error::Api` with that status.
#[tokio::test(start_paused = true)]
async fn api_500_502_503_504() {
    for code in [500u16, 502, 503, 504] {
        let emu = emulator().await;
        let llm = client(&emu);
        emu.push_fault(Route::Chat, Fault::status(code));
        assert_eq!(llm.invoke("once").await.unwrap(), echo(KEY, "once"));
        assert_eq!(seen(&emu), (1, 2), "{code} once");
        assert_eq!(llm.stats().retries, 1);

        break_route(&emu, Route::Chat, Fault::status(code));
        let error = llm.invoke("always").await.unwrap_err();
        let (status, message, code_field) = api_error(&error);
        assert_eq!(status, code);
        assert_eq!(
            message,
            format!("injected fault: {}", error.status().unwrap())
        );
        assert_eq!(code_field, Some("injected_fault"));
        assert!(error.is_retryable() && !error.is_auth());
        says(
            &error.to_string(),
            &[
                &format!("the Evolution API answered {code}"),
                "(server error: retry later)",
            ],
        );
        assert_eq!(seen(&emu), (1, 2 + ATTEMPTS), "{code} always");
        assert_eq!(emu.stats().chat_status(code), 1 + ATTEMPTS);
        assert_eq!(llm.stats().retries, 1 + (ATTEMPTS - 1));
        heal(&emu);
    }
}
