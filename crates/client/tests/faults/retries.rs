//! Rows about what the retry layer resends, and what it must not: an IAM outage the token
//! manager has already retried, a quota that is used up, a server asking for a longer wait than
//! the client may sleep.

use std::time::Duration;

use bytes::Bytes;
use evolution_client::fallback::{EndpointFailure, FallbackLayer};
use evolution_client::retry::{LongRetryAfter, RetryConfig, RetryLayer};
use evolution_client::{Error, stack};
use evolution_emulator::{DEMO_MODEL, Fault, Route};
use evolution_token::{Credentials, TokenError, TokenManager};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

use crate::manager::wait_out_the_token_backoff;
use crate::{
    ATTEMPTS, BACKUP, BACKUP_SECRET, FETCH_ATTEMPTS, KEY, SECRET, break_route, builder, client,
    closed_port, echo, emulator, heal, says, seen, token_error, two_keys,
};

/// The call failed with IAM's 503 after one refresh of `FETCH_ATTEMPTS` IAM requests.
#[track_caller]
fn iam_unavailable(error: &TokenError) {
    assert!(
        matches!(
            error,
            TokenError::Unavailable { status, attempts, .. }
                if status.as_u16() == 503 && u64::from(*attempts) == FETCH_ATTEMPTS
        ),
        "{error:?}"
    );
}

/// IAM answers 503 to everything: one call makes exactly one refresh's IAM requests (the
/// token manager's own retries), and the retry layer does not start another refresh.
#[tokio::test(start_paused = true)]
async fn iam_down_one_call_makes_one_refresh() {
    let emu = emulator().await;
    break_route(&emu, Route::Iam, Fault::status(503));
    let llm = client(&emu);

    let error = llm.invoke("hi").await.unwrap_err();
    iam_unavailable(token_error(&error));
    // Not retried by the stack, but a caller may try again later.
    assert!(error.is_retryable() && !error.is_auth(), "{error:?}");
    says(
        &error.to_string(),
        &["is unavailable", "try again later, or check the auth URL"],
    );
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS, 0));
    assert_eq!(llm.stats().retries, 0);
    assert_eq!(llm.stats().failed_refreshes, 1);

    // Right after, the token manager is backing off: the last error at once, no IAM request.
    heal(&emu);
    let again = llm.invoke("hi").await.unwrap_err();
    iam_unavailable(token_error(&again));
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS, 0));
    wait_out_the_token_backoff().await;
    assert_eq!(llm.invoke("hi").await.unwrap(), echo(KEY, "hi"));
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS + 1, 1));
}

/// The same with a backup key: IAM is shared by both keys, so the call does not switch to the
/// backup (whose token manager would only repeat the IAM requests). Both through the client
/// (auth fallback) and through a stack of one's own with `EndpointFailure`, which moves
/// traffic on failed requests but not on an IAM outage.
#[tokio::test(start_paused = true)]
async fn iam_down_with_a_backup_key() {
    let emu = two_keys().await;
    break_route(&emu, Route::Iam, Fault::status(503));
    let llm = builder(&emu)
        .backup_credentials(BACKUP, BACKUP_SECRET)
        .build()
        .unwrap();
    let error = llm.invoke("hi").await.unwrap_err();
    iam_unavailable(token_error(&error));
    assert!(error.is_retryable() && !error.is_auth());
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS, 0));
    assert_eq!(emu.stats().iam_requests_for(BACKUP), 0);
    assert!(llm.using_primary());

    // Endpoint fallback, assembled from the client's public pieces.
    let emu = two_keys().await;
    break_route(&emu, Route::Iam, Fault::status(503));
    let tokens = |key: &str, secret: &str| {
        TokenManager::builder(Credentials::new(key, secret))
            .auth_url(emu.auth_url())
            .build()
            .unwrap()
    };
    let http = reqwest::Client::new();
    let per_attempt = Duration::from_secs(60);
    let fallback = FallbackLayer::new(stack::authenticated(
        http.clone(),
        tokens(BACKUP, BACKUP_SECRET),
        per_attempt,
    ))
    .policy(EndpointFailure);
    let handle = fallback.handle();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryConfig::default()))
        .layer(fallback)
        .service(stack::authenticated(http, tokens(KEY, SECRET), per_attempt));
    let body =
        format!(r#"{{"model":"{DEMO_MODEL}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let request = http::Request::post(format!("{}/chat/completions", emu.base_url()))
        .body(Bytes::from(body))
        .unwrap();
    let error = service.clone().oneshot(request).await.unwrap_err();
    iam_unavailable(error.downcast_ref::<TokenError>().expect("a token error"));
    assert_eq!(seen(&emu), (FETCH_ATTEMPTS, 0));
    assert_eq!(emu.stats().iam_requests_for(BACKUP), 0, "no switch");
    assert!(handle.using_primary());
    assert_eq!(handle.switches(), 0);
}

/// A per-attempt timeout while the server generates: resent by default (as the OpenAI SDKs
/// do: the completion may be generated and billed twice); with `retry_on_timeout(false)`, the
/// call ends with the timeout after one API request.
#[tokio::test(start_paused = true)]
async fn a_timed_out_completion_is_resent_only_if_allowed() {
    let emu = emulator().await;
    let timeout = Duration::from_secs(5);
    let llm = builder(&emu).request_timeout(timeout).build().unwrap();
    emu.push_fault(Route::Chat, Fault::delay(Duration::from_secs(120)));
    assert_eq!(llm.invoke("a").await.unwrap(), echo(KEY, "a"));
    assert_eq!(seen(&emu), (1, 2), "resent by default");

    let emu = emulator().await;
    let llm = builder(&emu)
        .request_timeout(timeout)
        .retry(
            RetryConfig::builder()
                .retry_on_timeout(false)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    llm.token_manager().get_token().await.unwrap();
    emu.push_fault(Route::Chat, Fault::delay(Duration::from_secs(120)));
    let started = Instant::now();
    let error = llm.invoke("b").await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout(limit) if limit == timeout),
        "{error:?}"
    );
    assert_eq!(started.elapsed(), timeout, "no backoff, no second attempt");
    assert!(error.is_retryable(), "the caller may still decide to");
    says(
        &error.to_string(),
        &["no answer from the Evolution API within 5s"],
    );
    assert_eq!(seen(&emu), (1, 1), "one API request");
    assert_eq!(llm.stats().retries, 0);
}

/// The server reads the whole request and drops the connection without answering: the
/// request may have been processed. Resent by default; with `retry_ambiguous(false)`, the call
/// ends with the transport error after one API request. A refused connection (nothing sent)
/// is retried either way.
#[tokio::test(start_paused = true)]
async fn a_connection_dropped_after_the_request_is_resent_only_if_allowed() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::close());
    assert_eq!(client(&emu).invoke("a").await.unwrap(), echo(KEY, "a"));
    assert_eq!(seen(&emu), (1, 2), "resent by default");

    let emu = emulator().await;
    let careful = || {
        RetryConfig::builder()
            .retry_ambiguous(false)
            .retry_on_timeout(false)
            .build()
            .unwrap()
    };
    let llm = builder(&emu).retry(careful()).build().unwrap();
    emu.push_fault(Route::Chat, Fault::close());
    let error = llm.invoke("b").await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    says(
        &error.to_string(),
        &["request to the Evolution API failed", "check the network"],
    );
    assert_eq!(seen(&emu), (1, 1), "one API request");
    assert_eq!(emu.stats().connections_dropped, 1);
    assert_eq!(llm.stats().retries, 0);

    let base_url = format!("http://127.0.0.1:{}/v1", closed_port());
    let refused = builder(&emu)
        .base_url(base_url)
        .retry(careful())
        .build()
        .unwrap();
    let error = refused.invoke("c").await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(refused.stats().retries, ATTEMPTS - 1, "nothing was sent");
}

/// A 429 whose body says the quota is exhausted (OpenAI's `insufficient_quota`) fails at once,
/// with an error saying so: a retry cannot help until the quota is raised.
#[tokio::test(start_paused = true)]
async fn quota_exhausted_is_not_retried() {
    let emu = emulator().await;
    let llm = client(&emu);
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(
            429,
            "application/json",
            r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        ),
    );
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "no wait");
    match &error {
        Error::QuotaExhausted {
            status,
            message,
            code,
        } => {
            assert_eq!(status.as_u16(), 429);
            assert!(message.starts_with("You exceeded your current quota"));
            assert_eq!(code.as_deref(), Some("insufficient_quota"));
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
    assert_eq!(error.status().map(|s| s.as_u16()), Some(429));
    assert!(!error.is_retryable() && !error.is_auth(), "{error:?}");
    says(
        &error.to_string(),
        &[
            "the Evolution API answered 429 Too Many Requests",
            "You exceeded your current quota",
            "the quota is exhausted",
            "check the billing and the quotas of the project",
        ],
    );
    assert_eq!(seen(&emu), (1, 1), "one API request");
    assert_eq!(llm.stats().retries, 0);

    // A 429 that only says "slow down" is still retried.
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(
            429,
            "application/json",
            r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        ),
    );
    assert_eq!(llm.invoke("again").await.unwrap(), echo(KEY, "again"));
    assert_eq!(seen(&emu), (1, 3));
}

/// A 429 asking for an hour, beyond `max_retry_after` (60 s): the call fails at once with the
/// server's wait in the error, instead of coming back after 60 s into another 429.
#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_cap_fails_at_once() {
    let emu = emulator().await;
    let llm = client(&emu);
    emu.push_fault(
        Route::Chat,
        Fault::status(429)
            .with_header("retry-after", "3600")
            .with_message("daily limit reached"),
    );
    let started = Instant::now();
    let error = llm.invoke("hi").await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "no wait");
    assert!(
        matches!(
            &error,
            Error::RetryAfterTooLong { retry_after, max_retry_after, .. }
                if *retry_after == Duration::from_secs(3600)
                    && *max_retry_after == Duration::from_secs(60)
        ),
        "{error:?}"
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(error.status().map(|s| s.as_u16()), Some(429));
    assert!(error.is_retryable() && !error.is_auth(), "{error:?}");
    says(
        &error.to_string(),
        &[
            "the Evolution API answered 429 Too Many Requests: daily limit reached",
            "asks to wait 3600 s",
            "longer than max_retry_after (60 s)",
        ],
    );
    assert_eq!(seen(&emu), (1, 1), "one API request");

    // `LongRetryAfter::RetryEarly`: as before, the wait is cut to 60 s and the call retried.
    let llm = builder(&emu)
        .retry(
            RetryConfig::builder()
                .long_retry_after(LongRetryAfter::RetryEarly)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "3600"),
    );
    let started = Instant::now();
    assert_eq!(llm.invoke("early").await.unwrap(), echo(KEY, "early"));
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen(&emu).1, 3);
}
