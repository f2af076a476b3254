use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use evolution_emulator::{Emulator, Fault, Route};
use evolution_testkit::transport;
use evolution_token::{AuthLayer, AuthMiddleware, DeadlineLayer, TokenError};
use http::{Request, Response, StatusCode};
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use crate::{emulator, manager};

fn chat_request(emu: &Emulator) -> Request<Bytes> {
    Request::post(format!("{}/chat/completions", emu.base_url()))
        .header("content-type", "application/json")
        .body(Bytes::from_static(
            br#"{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn revoked_token_is_invisible_to_the_caller() {
    let emu = emulator().await;
    let tokens = manager(&emu);
    let mut service = ServiceBuilder::new()
        .layer(AuthLayer::new(tokens.clone()))
        .service(transport());

    let ok = service
        .ready()
        .await
        .unwrap()
        .call(chat_request(&emu))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let token = tokens.get_token().await.unwrap();
    emu.revoke_token(token.secret().expose_secret());
    let ok = service
        .ready()
        .await
        .unwrap()
        .call(chat_request(&emu))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 2, "exactly one extra IAM request");
    assert_eq!(stats.chat_status(401), 1);
    assert_eq!(stats.chat_status(200), 2);
}

#[tokio::test(start_paused = true)]
async fn a_persistent_401_is_resent_once_then_returned() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(401));
    emu.push_fault(Route::Chat, Fault::status(401));
    let service = AuthLayer::new(manager(&emu));
    let response = tower::Layer::layer(&service, transport())
        .oneshot(chat_request(&emu))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 2);
    assert_eq!(stats.iam_requests, 2);
}

#[tokio::test(start_paused = true)]
async fn a_403_is_not_an_expiry() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(403));
    let tokens = manager(&emu);
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(tokens.clone()))
        .service(transport());
    let response = service.oneshot(chat_request(&emu)).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(emu.stats().iam_requests, 1);
    assert_eq!(emu.stats().chat_requests, 1);
    assert!(tokens.info().has_token);
}

#[tokio::test(start_paused = true)]
async fn token_errors_surface_as_typed_errors() {
    let emu = emulator().await;
    emu.push_fault(Route::Iam, Fault::status(401));
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(manager(&emu)))
        .service(transport());
    let error = service.oneshot(chat_request(&emu)).await.unwrap_err();
    let token_error = error
        .downcast_ref::<evolution_token::TokenError>()
        .expect("a TokenError");
    assert!(token_error.is_auth());
    assert_eq!(emu.stats().chat_requests, 0);
}

#[tokio::test(start_paused = true)]
async fn authorization_header_is_sensitive() {
    let emu = emulator().await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let captured = seen.clone();
    let inner = service_fn(move |request: Request<Bytes>| {
        let header = request.headers().get(http::header::AUTHORIZATION).cloned();
        *captured.lock().unwrap() = header;
        async { Ok::<_, Infallible>(Response::new(Bytes::new())) }
    });
    ServiceBuilder::new()
        .layer(AuthLayer::new(manager(&emu)))
        .service(inner)
        .oneshot(chat_request(&emu))
        .await
        .unwrap();
    let header = seen.lock().unwrap().clone().unwrap();
    assert!(header.is_sensitive());
    assert!(header.to_str().unwrap().starts_with("Bearer evo"));
}

#[tokio::test(start_paused = true)]
async fn reqwest_middleware_resends_once_on_a_revoked_token() {
    let emu = emulator().await;
    let tokens = manager(&emu);
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(tokens.clone()))
        .build();
    let send = || {
        client
            .post(format!("{}/chat/completions", emu.base_url()))
            .header("content-type", "application/json")
            .body(r#"{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}"#)
            .send()
    };
    assert_eq!(send().await.unwrap().status(), StatusCode::OK);
    let token = tokens.get_token().await.unwrap();
    emu.revoke_token(token.secret().expose_secret());
    assert_eq!(send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(emu.stats().iam_requests, 2);
    assert_eq!(emu.stats().chat_status(401), 1);
}

/// Longer than any test: an IAM that accepts the request and never answers.
const BLACKHOLE: Duration = Duration::from_secs(24 * 60 * 60);

/// A `Deadline` above `Auth` bounds the wait for a token: at the deadline the call ends with
/// `TokenError::Deadline` (IAM did not answer), not with the timeout's `Elapsed`, which would
/// blame the API. The refresh goes on: once IAM answers, the next call gets its token.
#[tokio::test(start_paused = true)]
async fn a_deadline_above_ends_the_wait_for_a_token() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_secs(8));
    let limit = Duration::from_secs(5);
    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::new(limit))
        .layer(AuthLayer::new(manager(&emu)))
        .service(transport());

    let started = Instant::now();
    let error = service
        .clone()
        .oneshot(chat_request(&emu))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), limit);
    match error.downcast_ref::<TokenError>() {
        Some(TokenError::Deadline { limit: l, auth_url }) => {
            assert_eq!((*l, &**auth_url), (limit, &*emu.auth_url()));
        }
        _ => panic!("expected TokenError::Deadline, got {error:?}"),
    }
    assert!(error.downcast_ref::<TokenError>().unwrap().is_transient());
    assert_eq!(
        (emu.stats().iam_requests, emu.stats().chat_requests),
        (1, 0)
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    emu.set_latency(Route::Iam, Duration::ZERO);
    let ok = service.oneshot(chat_request(&emu)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        (emu.stats().iam_requests, emu.stats().chat_requests),
        (1, 1)
    );
}

/// The same deadline covers the request itself and the resend after a 401: a slow API ends
/// the call with `Elapsed` at the deadline, and so does a resend that is still waiting for a
/// new token when IAM stopped answering, but as `TokenError::Deadline`.
#[tokio::test(start_paused = true)]
async fn a_deadline_above_covers_the_request_and_the_resend() {
    let emu = emulator().await;
    let tokens = manager(&emu);
    let limit = Duration::from_secs(5);
    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::new(limit))
        .layer(AuthLayer::new(tokens.clone()))
        .service(transport());
    let token = tokens.get_token().await.unwrap();

    emu.set_latency(Route::Chat, Duration::from_secs(60));
    let started = Instant::now();
    let error = service
        .clone()
        .oneshot(chat_request(&emu))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), limit);
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error:?}");

    emu.set_latency(Route::Chat, Duration::from_secs(3));
    emu.revoke_token(token.secret().expose_secret());
    emu.set_latency(Route::Iam, BLACKHOLE);
    let started = Instant::now();
    let error = service.oneshot(chat_request(&emu)).await.unwrap_err();
    assert_eq!(started.elapsed(), limit);
    assert!(
        matches!(error.downcast_ref(), Some(TokenError::Deadline { limit: l, .. }) if *l == limit),
        "{error:?}"
    );
    let stats = emu.stats();
    assert_eq!((stats.iam_requests, stats.chat_requests), (2, 2));
    assert_eq!(stats.chat_status(401), 1);
}

/// Nested deadlines: the earlier one ends the wait, and its limit is the one reported.
#[tokio::test(start_paused = true)]
async fn the_earlier_of_two_deadlines_ends_the_wait() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, BLACKHOLE);
    let service = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(3)))
        .layer(DeadlineLayer::new(Duration::from_secs(60)))
        .layer(AuthLayer::new(manager(&emu)))
        .service(transport());
    let started = Instant::now();
    let error = service.oneshot(chat_request(&emu)).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert!(
        matches!(error.downcast_ref(), Some(TokenError::Deadline { limit, .. }) if *limit == Duration::from_secs(3)),
        "{error:?}"
    );
}

/// Without a deadline above, `Auth` sets no limit of its own: the wait ends with the token
/// fetch's own timeout (3 IAM requests of 10 s).
#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_fetch_limits_the_wait() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, BLACKHOLE);
    let service = AuthLayer::new(manager(&emu));
    let error = tower::Layer::layer(&service, transport())
        .oneshot(chat_request(&emu))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.downcast_ref(),
            Some(TokenError::Timeout { attempts: 3, .. })
        ),
        "{error:?}"
    );
}
