use std::sync::Arc;
use std::time::Duration;

use evolution_retry::{
    Classify, ErrorBody, Jitter, RetryConfig, RetryLayer, RetryReason, Retryable, classify_status,
};
use evolution_token::TokenError;
use http::{HeaderMap, StatusCode};
use tower::{Layer, ServiceExt};
use tower_test::mock;

use crate::{Events, always, call, error, request, run, status};

fn config(events: &Events) -> RetryConfig {
    RetryConfig::builder()
        .jitter(Jitter::None)
        .observer(events.observer())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn fatal_statuses_are_not_retried() {
    for code in [400, 401, 403, 404, 405, 409, 422, 501, 505] {
        let outcome = run(RetryConfig::default(), always(code)).await;
        assert_eq!(outcome.attempts.len(), 1, "{code}");
        assert_eq!(outcome.status(), code);
    }
}

#[tokio::test(start_paused = true)]
async fn transient_statuses_are_retried() {
    for code in [408, 429, 500, 502, 503, 504] {
        let events = Events::default();
        let outcome = run(config(&events), [status(code), status(200)]).await;
        assert_eq!(outcome.attempts.len(), 2, "{code}");
        assert_eq!(outcome.status(), 200);
        let event = events.take()[0];
        assert_eq!(event.attempt, 2);
        assert_eq!(
            event.reason,
            RetryReason::Status(StatusCode::from_u16(code).unwrap())
        );
        assert_eq!(event.reason.label(), code.to_string());
        assert_eq!(event.delay, Duration::from_secs(1));
    }
}

fn unavailable() -> TokenError {
    TokenError::Unavailable {
        status: StatusCode::SERVICE_UNAVAILABLE,
        attempts: 3,
        auth_url: Arc::from("http://iam.test/token"),
    }
}

/// IAM has one retry schedule, the token manager's: a token error its fetch has already
/// retried is handed back at once, still saying it is transient (the caller may try later).
#[tokio::test(start_paused = true)]
async fn token_errors_the_fetch_has_retried_are_not_retried_again() {
    let retried_by_the_fetch = [
        unavailable(),
        TokenError::Timeout {
            timeout: Duration::from_secs(10),
            attempts: 3,
            auth_url: Arc::from("http://iam.test/token"),
        },
    ];
    for token_error in retried_by_the_fetch {
        assert!(token_error.is_transient());
        let kind = token_error.kind();
        let events = Events::default();
        let outcome = run(config(&events), [error(token_error), status(200)]).await;
        assert_eq!(outcome.attempts.len(), 1, "{kind:?}");
        let returned = outcome.result.unwrap_err();
        assert_eq!(
            returned.downcast_ref::<TokenError>().map(TokenError::kind),
            Some(kind)
        );
        assert!(events.take().is_empty());
    }
}

/// An aborted refresh made no IAM request to speak of: the next attempt starts a new one.
#[tokio::test(start_paused = true)]
async fn an_aborted_refresh_is_retried() {
    let events = Events::default();
    let outcome = run(
        config(&events),
        [
            error(TokenError::Aborted {
                reason: evolution_token::AbortReason::RuntimeShutdown,
            }),
            status(200),
        ],
    )
    .await;
    assert_eq!(outcome.attempts.len(), 2);
    assert_eq!(
        events.take()[0].reason,
        RetryReason::Token(evolution_token::TokenErrorKind::Aborted)
    );
}

/// The attempt's time ran out while its refresh was still running: the next attempt joins
/// that refresh (no new IAM request), so the layer retries it.
#[tokio::test(start_paused = true)]
async fn a_token_wait_cut_by_the_attempts_deadline_is_retried() {
    let events = Events::default();
    let deadline = TokenError::Deadline {
        limit: Duration::from_secs(5),
        auth_url: Arc::from("http://iam.test/token"),
    };
    let outcome = run(config(&events), [error(deadline), status(200)]).await;
    assert_eq!(outcome.attempts.len(), 2);
    assert!(outcome.result.is_ok());
    assert_eq!(
        events.take()[0].reason,
        RetryReason::Token(evolution_token::TokenErrorKind::Deadline)
    );
}

#[tokio::test(start_paused = true)]
async fn token_errors_are_not_retried_when_fatal() {
    let fatal = [
        TokenError::InvalidCredentials {
            key_id: Arc::from("key"),
        },
        TokenError::Forbidden {
            key_id: Arc::from("key"),
        },
        TokenError::UnexpectedStatus {
            status: StatusCode::NOT_FOUND,
            auth_url: Arc::from("http://iam.test/token"),
        },
    ];
    for token_error in fatal {
        assert!(!token_error.is_transient());
        let kind = token_error.kind();
        let outcome = run(RetryConfig::default(), [error(token_error), status(200)]).await;
        assert_eq!(outcome.attempts.len(), 1, "{kind:?}");
        let returned = outcome.result.unwrap_err();
        assert_eq!(
            returned.downcast_ref::<TokenError>().map(TokenError::kind),
            Some(kind),
            "the caller gets the typed error"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeouts_are_retried() {
    // Retry over a per-attempt timeout, as in the client's stack.
    let events = Events::default();
    let (backend, mut handle) = mock::pair::<crate::Req, crate::Res>();
    let service = RetryLayer::new(config(&events))
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(2)).layer(backend));
    let call = tokio::spawn(service.oneshot(request()));
    let (_, never_answered) = handle.next_request().await.unwrap();
    let (_, reply) = handle.next_request().await.unwrap();
    drop(never_answered);
    reply.send_response(http::Response::new(bytes::Bytes::new()));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
    let event = events.take()[0];
    assert_eq!(event.reason, RetryReason::Timeout);
    assert_eq!(event.reason.label(), "timeout");
}

#[tokio::test(start_paused = true)]
async fn connection_errors_are_retried() {
    let events = Events::default();
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let outcome = run(config(&events), [error(refused), status(200)]).await;
    assert_eq!(outcome.attempts.len(), 2);
    assert_eq!(events.take()[0].reason, RetryReason::Connect);
}

/// With `retry_on_timeout(false)`, a per-attempt timeout (the server may be generating) ends
/// the call: one attempt, the timeout error.
#[tokio::test(start_paused = true)]
async fn timeouts_are_not_resent_when_retry_on_timeout_is_off() {
    let config = RetryConfig::builder()
        .retry_on_timeout(false)
        .build()
        .unwrap();
    let (backend, mut handle) = mock::pair::<crate::Req, crate::Res>();
    let service = RetryLayer::new(config)
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(2)).layer(backend));
    let call = tokio::spawn(service.oneshot(request()));
    let (_, _never_answered) = handle.next_request().await.unwrap();
    let started = tokio::time::Instant::now();
    let error = call.await.unwrap().unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(2), "no backoff");
    assert!(handle.next_request().await.is_none(), "no second attempt");
}

/// With `retry_ambiguous(false)`, a connection lost after the request was written is not
/// resent, but a refused connection (nothing sent) still is.
#[tokio::test(start_paused = true)]
async fn ambiguous_failures_are_not_resent_when_retry_ambiguous_is_off() {
    let events = Events::default();
    let config = RetryConfig::builder()
        .retry_ambiguous(false)
        .retry_on_timeout(false)
        .jitter(Jitter::None)
        .observer(events.observer())
        .build()
        .unwrap();
    for kind in [
        std::io::ErrorKind::ConnectionReset,
        std::io::ErrorKind::BrokenPipe,
        std::io::ErrorKind::UnexpectedEof,
    ] {
        let outcome = run(
            config.clone(),
            [error(std::io::Error::from(kind)), status(200)],
        )
        .await;
        assert_eq!(outcome.attempts.len(), 1, "{kind:?}");
    }
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let outcome = run(config, [error(refused), status(200)]).await;
    assert_eq!(outcome.attempts.len(), 2, "nothing was sent: safe to send");
    assert_eq!(events.take().len(), 1);
}

/// By default both are resent, as the OpenAI SDKs do.
#[tokio::test(start_paused = true)]
async fn ambiguous_failures_are_resent_by_default() {
    let events = Events::default();
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    let outcome = run(config(&events), [error(reset), status(200)]).await;
    assert_eq!(outcome.attempts.len(), 2);
    assert_eq!(events.take()[0].reason, RetryReason::Network);
}

fn with_body(code: u16, body: &'static str) -> crate::Answer {
    let mut response = http::Response::builder()
        .status(code)
        .body(bytes::Bytes::from_static(body.as_bytes()))
        .unwrap();
    response
        .extensions_mut()
        .insert(ErrorBody::new(bytes::Bytes::from_static(body.as_bytes())));
    crate::Answer::Response(response)
}

const QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;

/// A 429 whose buffered body says the quota is exhausted is fatal; a 429 that says "slow
/// down", or whose body was not buffered, is retried.
#[tokio::test(start_paused = true)]
async fn a_quota_exhausted_answer_is_fatal() {
    let outcome = run(RetryConfig::default(), [with_body(429, QUOTA), status(200)]).await;
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(outcome.status(), 429);

    let slow_down = r#"{"error":{"message":"rate limit exceeded","code":"rate_limit_exceeded"}}"#;
    let outcome = run(
        RetryConfig::default(),
        [with_body(429, slow_down), status(200)],
    )
    .await;
    assert_eq!(outcome.attempts.len(), 2);

    let outcome = run(
        RetryConfig::default(),
        [
            crate::status_with(429, "content-type", "application/json"),
            status(200),
        ],
    )
    .await;
    assert_eq!(
        outcome.attempts.len(),
        2,
        "no buffered body: the head decides"
    );

    // A classifier of its own keeps the quota rule unless it overrides `classify_answer`.
    let layer = RetryLayer::new(RetryConfig::default()).with_classifier(RetryConflicts);
    let (backend, mut handle) = mock::pair();
    let outcome = call(
        layer.layer(backend),
        &mut handle,
        [with_body(429, QUOTA), status(200)],
    )
    .await;
    assert_eq!(outcome.attempts.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn unknown_errors_are_fatal() {
    let outcome = run(RetryConfig::default(), [error("no idea"), status(200)]).await;
    assert_eq!(outcome.attempts.len(), 1);
    assert_eq!(outcome.result.unwrap_err().to_string(), "no idea");
}

#[derive(Debug, Clone, Copy)]
struct RetryConflicts;

impl Classify for RetryConflicts {
    fn classify_response(&self, status: StatusCode, _: &HeaderMap) -> Option<Retryable> {
        match status {
            StatusCode::CONFLICT => Some(Retryable::Transient),
            other => classify_status(other),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_changes_one_rule() {
    let layer = RetryLayer::new(RetryConfig::default()).with_classifier(RetryConflicts);
    let (backend, mut handle) = mock::pair();
    let outcome = call(
        layer.layer(backend),
        &mut handle,
        [status(409), status(200)],
    )
    .await;
    assert_eq!(outcome.attempts.len(), 2);

    let (backend, mut handle) = mock::pair();
    let outcome = call(layer.layer(backend), &mut handle, always(400)).await;
    assert_eq!(outcome.attempts.len(), 1, "the other rules stay");
}

#[test]
fn reqwest_middleware_errors_are_classified_by_what_they_hold() {
    let token = reqwest_middleware::Error::middleware(TokenError::Aborted {
        reason: evolution_token::AbortReason::RuntimeShutdown,
    });
    assert_eq!(
        evolution_retry::classify_error(&token),
        Retryable::Transient
    );
    let retried = reqwest_middleware::Error::middleware(unavailable());
    assert_eq!(evolution_retry::classify_error(&retried), Retryable::Fatal);
    let fatal = reqwest_middleware::Error::middleware(TokenError::Forbidden {
        key_id: Arc::from("key"),
    });
    assert_eq!(evolution_retry::classify_error(&fatal), Retryable::Fatal);
    let boxed: evolution_retry::BoxError = Box::new(TokenError::Aborted {
        reason: evolution_token::AbortReason::RuntimeShutdown,
    });
    assert_eq!(
        evolution_retry::classify_error(&*boxed),
        Retryable::Transient
    );
}
