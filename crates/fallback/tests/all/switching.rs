//! When the primary fails, and when it does not.

use std::sync::Arc;

use evolution_fallback::{EndpointFailure, SwitchReason};
use evolution_token::TokenError;
use http::StatusCode;

use crate::{answer, assert_idle, call, fail, mocks, mocks_with, reply};

#[tokio::test(start_paused = true)]
async fn a_401_from_the_primary_is_resent_to_the_backup() {
    let (service, mut p, mut b) = mocks();
    let handle = service.handle();

    let pending = call(&service, "first");
    assert_eq!(reply(&mut p, answer(401, "primary")).await, "first");
    let (request, send) = b.next_request().await.unwrap();
    assert_eq!(*request.body(), "first", "the same request is resent");
    assert_eq!(request.headers()["x-request"], "first");
    assert_eq!(request.uri(), "http://evolution.test/chat/completions");
    send.send_response(answer(200, "backup"));

    let response = pending.await.unwrap().unwrap();
    assert_eq!(*response.body(), "backup");
    assert!(!handle.using_primary());
    assert_eq!(handle.switches(), 1);

    // Sticky: the next call goes straight to the backup.
    let pending = call(&service, "second");
    assert_eq!(reply(&mut b, answer(200, "backup")).await, "second");
    assert_eq!(*pending.await.unwrap().unwrap().body(), "backup");
    assert_idle(&mut p).await;
    assert_eq!(handle.switches(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_403_switches() {
    let (service, mut p, mut b) = mocks();
    let pending = call(&service, "hi");
    reply(&mut p, answer(403, "forbidden")).await;
    reply(&mut b, answer(200, "backup")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "backup");
    assert!(!service.handle().using_primary());
}

#[tokio::test(start_paused = true)]
async fn an_iam_rejection_switches() {
    let (service, mut p, mut b) = mocks();
    let pending = call(&service, "hi");
    fail(
        &mut p,
        TokenError::InvalidCredentials {
            key_id: Arc::from("key-a"),
        },
    )
    .await;
    reply(&mut b, answer(200, "backup")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "backup");
    assert_eq!(service.handle().switches(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_transient_iam_error_does_not_switch() {
    let (service, mut p, mut b) = mocks();
    let pending = call(&service, "hi");
    fail(
        &mut p,
        TokenError::Unavailable {
            status: StatusCode::SERVICE_UNAVAILABLE,
            attempts: 3,
            auth_url: Arc::from("http://iam.test"),
        },
    )
    .await;
    let error = pending.await.unwrap().unwrap_err();
    assert!(error.downcast_ref::<TokenError>().unwrap().is_transient());
    assert!(service.handle().using_primary());
    assert_idle(&mut b).await;
}

/// IAM is shared by both keys: an IAM outage (already retried by the token manager) is not
/// the endpoint's, and switching would only repeat the IAM requests with the backup's key.
#[tokio::test(start_paused = true)]
async fn an_iam_outage_does_not_switch_with_endpoint_fallback() {
    let (service, mut p, mut b) = mocks_with(EndpointFailure);
    let pending = call(&service, "hi");
    fail(
        &mut p,
        TokenError::Unavailable {
            status: StatusCode::SERVICE_UNAVAILABLE,
            attempts: 3,
            auth_url: Arc::from("http://iam.test"),
        },
    )
    .await;
    // Bounded: a switch would leave the call waiting on the (silent) backup.
    let error = tokio::time::timeout(std::time::Duration::from_secs(60), pending)
        .await
        .expect("no switch to the backup")
        .unwrap()
        .unwrap_err();
    assert!(error.downcast_ref::<TokenError>().unwrap().is_transient());
    assert!(service.handle().using_primary());
    assert_eq!(service.handle().switches(), 0);
    assert_idle(&mut b).await;
}

#[tokio::test(start_paused = true)]
async fn a_5xx_from_the_primary_does_not_switch_by_default() {
    let (service, mut p, mut b) = mocks();
    let pending = call(&service, "hi");
    reply(&mut p, answer(503, "busy")).await;
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(service.handle().using_primary());
    assert_eq!(service.handle().switches(), 0);
    assert_idle(&mut b).await;
}

#[tokio::test(start_paused = true)]
async fn a_5xx_switches_with_endpoint_fallback() {
    let (service, mut p, mut b) = mocks_with(EndpointFailure);
    let pending = call(&service, "hi");
    reply(&mut p, answer(502, "bad gateway")).await;
    reply(&mut b, answer(200, "backup")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "backup");
    assert!(!service.handle().using_primary());
}

#[tokio::test(start_paused = true)]
async fn a_failed_request_switches_with_endpoint_fallback() {
    let (service, mut p, mut b) = mocks_with(EndpointFailure);
    let pending = call(&service, "hi");
    fail(
        &mut p,
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    )
    .await;
    reply(&mut b, answer(200, "backup")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "backup");
    assert_eq!(service.handle().switches(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_error_is_handed_over_as_it_is() {
    let (service, mut p, mut b) = mocks_with(EndpointFailure);
    let pending = call(&service, "hi");
    reply(&mut p, answer(400, "bad request")).await;
    assert_eq!(
        pending.await.unwrap().unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_idle(&mut b).await;
    assert!(service.handle().using_primary());
}

#[tokio::test(start_paused = true)]
async fn concurrent_failures_switch_once() {
    const CALLERS: usize = 32;
    let (service, mut p, mut b) = mocks();
    let handle = service.handle();
    let pending: Vec<_> = (0..CALLERS).map(|_| call(&service, "hi")).collect();
    // Every call reached the primary before any failed.
    let mut waiting = Vec::new();
    for _ in 0..CALLERS {
        waiting.push(p.next_request().await.unwrap().1);
    }
    for send in waiting {
        send.send_response(answer(401, "revoked"));
    }
    for _ in 0..CALLERS {
        reply(&mut b, answer(200, "backup")).await;
    }
    for call in pending {
        assert_eq!(*call.await.unwrap().unwrap().body(), "backup");
    }
    assert_eq!(handle.switches(), 1);
    assert!(!handle.using_primary());
}

#[tokio::test(start_paused = true)]
async fn a_custom_policy_decides() {
    let (service, mut p, mut b) =
        mocks_with(|outcome: evolution_fallback::Outcome<'_>| match outcome {
            evolution_fallback::Outcome::Response {
                status: StatusCode::TOO_MANY_REQUESTS,
                ..
            } => Some(SwitchReason::Custom("rate_limited")),
            other => evolution_fallback::auth_failure(other),
        });
    let pending = call(&service, "hi");
    reply(&mut p, answer(429, "slow down")).await;
    reply(&mut b, answer(200, "backup")).await;
    assert_eq!(*pending.await.unwrap().unwrap().body(), "backup");
}
