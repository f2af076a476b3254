use std::sync::Arc;
use std::time::Duration;

use evolution_retry::{
    Classify, Jitter, RetryConfig, RetryLayer, RetryReason, Retryable, classify_status,
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

#[tokio::test(start_paused = true)]
async fn token_errors_are_retried_when_transient() {
    let transient = [
        unavailable(),
        TokenError::Timeout {
            timeout: Duration::from_secs(10),
            attempts: 1,
            auth_url: Arc::from("http://iam.test/token"),
        },
        TokenError::Aborted {
            reason: evolution_token::AbortReason::RuntimeShutdown,
        },
    ];
    for token_error in transient {
        assert!(token_error.is_transient());
        let kind = token_error.kind();
        let events = Events::default();
        let outcome = run(config(&events), [error(token_error), status(200)]).await;
        assert_eq!(outcome.attempts.len(), 2, "{kind:?}");
        assert_eq!(events.take()[0].reason, RetryReason::Token(kind));
    }
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
    let token = reqwest_middleware::Error::middleware(unavailable());
    assert_eq!(
        evolution_retry::classify_error(&token),
        Retryable::Transient
    );
    let fatal = reqwest_middleware::Error::middleware(TokenError::Forbidden {
        key_id: Arc::from("key"),
    });
    assert_eq!(evolution_retry::classify_error(&fatal), Retryable::Fatal);
    let boxed: evolution_retry::BoxError = Box::new(unavailable());
    assert_eq!(
        evolution_retry::classify_error(&*boxed),
        Retryable::Transient
    );
}
