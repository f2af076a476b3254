//! The client's stack over a transport of your own (`build_service_over`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use evolution_client::token::BoxError;
use evolution_client::{Body, Metrics};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceExt, service_fn};

use crate::{KEY, builder, emulator};

fn answer(status: StatusCode) -> Response<Body> {
    let body = Full::new(Bytes::from_static(b"{}"))
        .map_err(|never: Infallible| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

#[tokio::test]
async fn every_layer_runs_over_a_transport_of_your_own() {
    let emu = emulator().await;
    // Answers 503 to the first request, then 200; records what it was sent.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let transport = {
        let seen = seen.clone();
        service_fn(move |request: Request<Bytes>| {
            let mut seen = seen.lock().unwrap();
            let status = if seen.is_empty() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            seen.push((
                request.headers().get(AUTHORIZATION).cloned(),
                request.headers().get(CONTENT_TYPE).cloned(),
                request.uri().clone(),
            ));
            async move { Ok::<_, BoxError>(answer(status)) }
        })
    };
    let metrics = Metrics::new();
    let service = builder(&emu)
        .metrics(metrics.clone())
        .build_service_over(transport)
        .unwrap();

    let request = Request::post("http://transport.test/v1/chat/completions")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "the 503 was retried");
    let token = emu
        .issued_tokens()
        .pop()
        .expect("a token from the emulator's IAM");
    for (authorization, content_type, uri) in seen.iter() {
        let authorization = authorization.as_ref().expect("a bearer token");
        assert!(authorization.is_sensitive());
        assert_eq!(authorization, &format!("Bearer {token}"));
        assert_eq!(content_type.as_ref().unwrap(), "application/json");
        assert_eq!(uri, "http://transport.test/v1/chat/completions");
    }
    let stats = metrics.stats();
    assert_eq!(
        (stats.total_requests, stats.successes, stats.retries),
        (1, 1, 1)
    );
    assert_eq!(emu.stats().iam_requests_by_key[KEY], 1);
    assert_eq!(
        emu.stats().chat_requests,
        0,
        "nothing went to the emulator's API"
    );
}
