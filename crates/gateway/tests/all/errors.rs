//! Every error a client can meet, in OpenAI's shape with its code: bad requests refused
//! before any upstream call, upstream client errors passed through, upstream failures after
//! the stack's retries, timeouts, and an IAM that refuses or is down.

use std::time::Duration;

use bytes::Bytes;
use evolution_emulator::{Fault, Route};
use evolution_gateway::GatewayConfig;
use evolution_testkit::{KEY, emulator, emulator_builder};
use serde_json::json;

use crate::support::{
    Answer, MODEL, Served, chat_body, client_builder, closed_port, config, fast_retry, http,
};

async fn served(emu: &evolution_emulator::Emulator) -> Served {
    Served::with(client_builder(emu).build().unwrap(), config()).await
}

async fn post_raw(gateway: &Served, body: impl Into<reqwest::Body>) -> Answer {
    Answer::of(
        http()
            .post(gateway.at("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn chat(gateway: &Served) -> Answer {
    Answer::of(
        http()
            .post(gateway.at("/v1/chat/completions"))
            .json(&chat_body("hi"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get(gateway: &Served, path: &str) -> Answer {
    Answer::of(http().get(gateway.at(path)).send().await.unwrap()).await
}

// ---------------------------------------------------------------------------------------
// Refused before any upstream call
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_and_non_objects_are_400_invalid_json() {
    let emu = emulator().await;
    let gateway = served(&emu).await;

    for body in [
        "{\"model\": ",
        "not json",
        "",
        "[{\"model\": \"demo-model\"}]",
        "\"a string\"",
    ] {
        post_raw(&gateway, body)
            .await
            .assert_error(400, "invalid_json");
    }
    assert_eq!(emu.stats().chat_requests, 0);
    assert_eq!(emu.stats().iam_requests, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_or_without_content_length() {
    let emu = emulator().await;
    let limit = 256;
    let config = GatewayConfig {
        max_body_bytes: limit,
        ..config()
    };
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config).await;
    let big = serde_json::to_vec(&chat_body(&"x".repeat(limit))).unwrap();
    assert!(big.len() > limit);

    // Content-Length says it all.
    let declared = post_raw(&gateway, big.clone()).await;
    let message = declared.assert_error(413, "request_too_large");
    assert!(message.contains(&limit.to_string()), "{message}");

    // Chunked: the limit is found while reading.
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .chunks(64)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let chunked = post_raw(
        &gateway,
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
    )
    .await;
    chunked.assert_error(413, "request_too_large");

    // A chunked body within the limit is read and forwarded.
    let small = serde_json::to_vec(&chat_body("hi")).unwrap();
    assert!(small.len() <= limit);
    let chunks: Vec<Result<Bytes, std::io::Error>> = small
        .chunks(8)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    let fits = post_raw(
        &gateway,
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
    )
    .await;
    assert_eq!(fits.status, 200, "{fits:?}");
    assert_eq!(emu.stats().chat_requests, 1);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let emu = emulator().await;
    let gateway = served(&emu).await;

    for path in [
        "/",
        "/v1/completions",
        "/v2/chat/completions",
        "/v1/models/x",
    ] {
        get(&gateway, path).await.assert_error(404, "unknown_route");
    }
    let post = Answer::of(
        http()
            .post(gateway.at("/v1/completions"))
            .json(&chat_body("hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    post.assert_error(404, "unknown_route");

    get(&gateway, "/v1/chat/completions")
        .await
        .assert_error(405, "method_not_allowed");
    for path in ["/healthz", "/v1/models"] {
        let answer = Answer::of(
            http()
                .post(gateway.at(path))
                .body("{}")
                .send()
                .await
                .unwrap(),
        )
        .await;
        answer.assert_error(405, "method_not_allowed");
    }
    assert_eq!(emu.stats().chat_requests, 0);
    assert_eq!(emu.stats().models_requests, 0);
}

// ---------------------------------------------------------------------------------------
// Upstream client errors: passed through
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_upstream_400_is_passed_through_with_its_body() {
    let emu = emulator().await;
    let gateway = served(&emu).await;
    emu.push_fault(
        Route::Chat,
        Fault::status(400).with_message("max_tokens is too large: 99999"),
    );

    let answer = chat(&gateway).await;

    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(
        answer.json()["error"]["message"],
        "max_tokens is too large: 99999"
    );
    assert_eq!(emu.stats().chat_requests, 1, "a 400 is not retried");
}

#[tokio::test]
async fn an_unknown_model_is_the_upstream_404_model_not_found() {
    let emu = emulator_builder().model(MODEL).start().await.unwrap();
    let gateway = served(&emu).await;

    let answer = Answer::of(
        http()
            .post(gateway.at("/v1/chat/completions"))
            .json(
                &json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(answer.json()["error"]["code"], "model_not_found");
    assert_eq!(emu.stats().chat_status(404), 1);
}

#[tokio::test]
async fn an_upstream_429_comes_back_with_its_retry_after() {
    let emu = emulator().await;
    let gateway = served(&emu).await;
    // Longer than the stack waits (60 s): not retried, handed back at once.
    emu.push_fault(
        Route::Chat,
        Fault::status(429)
            .with_header("retry-after", "120")
            .with_message("rate limit: 10 requests per minute"),
    );

    let answer = chat(&gateway).await;

    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("120"), "{answer:?}");
    assert_eq!(
        answer.json()["error"]["message"],
        "rate limit: 10 requests per minute"
    );
    assert_eq!(emu.stats().chat_requests, 1);
}

#[tokio::test]
async fn an_upstream_429_within_the_stacks_wait_is_retried_first() {
    let emu = emulator().await;
    let gateway = served(&emu).await;
    for _ in 0..3 {
        emu.push_fault(
            Route::Chat,
            Fault::status(429)
                .with_header("retry-after-ms", "10")
                .with_header("retry-after", "3"),
        );
    }

    let answer = chat(&gateway).await;

    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("3"), "{answer:?}");
    assert_eq!(emu.stats().chat_requests, 3, "three attempts");
}

/// OpenAI's SDKs read `retry-after-ms` before `Retry-After`; an upstream that sends only
/// the former must not leave the client without a wait.
#[tokio::test]
async fn an_upstream_429_keeps_its_retry_after_ms() {
    let emu = emulator().await;
    let gateway = served(&emu).await;
    // 120 s: longer than the stack waits, handed back at once.
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after-ms", "120000"),
    );

    let answer = chat(&gateway).await;

    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(emu.stats().chat_requests, 1);
    assert_eq!(
        answer.header("retry-after-ms"),
        Some("120000"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn an_upstream_401_after_the_refresh_is_502_not_the_clients_401() {
    let emu = emulator().await;
    let gateway = served(&emu).await;
    // The first answer's 401 makes the stack refresh the token and resend; the second
    // 401 is about the gateway's Evolution key.
    emu.push_fault(Route::Chat, Fault::status(401));
    emu.push_fault(Route::Chat, Fault::status(401));

    let message = chat(&gateway).await.assert_error(502, "upstream_error");

    assert!(message.contains("EVOLUTION_KEY_ID"), "{message}");
    assert_eq!(emu.stats().chat_status(401), 2);
    assert_eq!(emu.stats().tokens_issued, 2, "a refresh between the two");
}

// ---------------------------------------------------------------------------------------
// Upstream failures after the retries
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn upstream_500s_after_the_retries_are_502_upstream_error() {
    let emu = emulator().await;
    let gateway = served(&emu).await;
    for _ in 0..3 {
        emu.push_fault(Route::Chat, Fault::status(500));
    }

    chat(&gateway).await.assert_error(502, "upstream_error");
    assert_eq!(emu.stats().chat_status(500), 3);

    // Two 500s and a success: the client sees the success.
    for _ in 0..2 {
        emu.push_fault(Route::Chat, Fault::status(500));
    }
    assert_eq!(chat(&gateway).await.status, 200);
}

#[tokio::test]
async fn upstream_503s_are_503_upstream_unavailable_with_the_upstreams_retry_after() {
    let emu = emulator().await;
    let gateway = served(&emu).await;
    for _ in 0..3 {
        emu.push_fault(
            Route::Chat,
            Fault::status(503)
                .with_header("retry-after-ms", "10")
                .with_header("retry-after", "7"),
        );
    }

    let answer = chat(&gateway).await;

    answer.assert_error(503, "upstream_unavailable");
    assert_eq!(answer.header("retry-after"), Some("7"), "{answer:?}");
    assert_eq!(emu.stats().chat_status(503), 3);
}

#[tokio::test]
async fn an_upstream_slower_than_the_request_timeout_is_504_upstream_timeout() {
    let emu = emulator().await;
    emu.set_latency(Route::Chat, Duration::from_secs(5));
    let client = client_builder(&emu)
        .request_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let gateway = Served::with(client, config()).await;

    let started = tokio::time::Instant::now();
    chat(&gateway).await.assert_error(504, "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(emu.stats().chat_requests, 3, "each attempt timed out");
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_upstream_error() {
    let emu = emulator().await;
    let client = client_builder(&emu)
        .base_url(format!("http://127.0.0.1:{}/v1", closed_port()))
        .build()
        .unwrap();
    let gateway = Served::with(client, config()).await;

    chat(&gateway).await.assert_error(502, "upstream_error");
    assert_eq!(emu.stats().iam_requests, 1, "the token was fetched");
}

// ---------------------------------------------------------------------------------------
// IAM, and /readyz
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn readyz_is_200_with_a_token() {
    let emu = emulator().await;
    let gateway = served(&emu).await;

    let ready = get(&gateway, "/readyz").await;

    assert_eq!(ready.status, 200, "{ready:?}");
    let value = ready.json();
    assert_eq!(value["status"], "ready");
    assert_eq!(value["key_id"], KEY);
    assert!(value["token_expires_in_secs"].as_u64().unwrap() > 3000);
    assert_eq!(emu.stats().iam_requests, 1);
    // The token it got serves the next call.
    assert_eq!(chat(&gateway).await.status, 200);
    assert_eq!(emu.stats().iam_requests, 1);
}

#[tokio::test]
async fn iam_refusing_the_key_is_502_and_not_ready() {
    let emu = emulator().await;
    let client = client_builder(&emu)
        .secret("not-the-secret")
        .build()
        .unwrap();
    let gateway = Served::with(client, config()).await;

    let message = chat(&gateway).await.assert_error(502, "upstream_error");
    assert!(message.contains("operator"), "{message}");
    let ready = get(&gateway, "/readyz").await;
    let reason = ready.assert_error(503, "upstream_unavailable");
    assert!(reason.contains(KEY), "{reason}");
    assert!(emu.stats().iam_status(401) >= 1);
    assert_eq!(emu.stats().chat_requests, 0);
}

#[tokio::test]
async fn iam_down_is_503_and_not_ready_with_a_reason() {
    let emu = emulator().await;
    emu.set_random_faults(vec![Fault::status(503)]);
    emu.set_fault_probability(1.0, 18, &[Route::Iam]);
    let client = client_builder(&emu)
        .fetch_attempts(1)
        .retry(fast_retry())
        .build()
        .unwrap();
    let gateway = Served::with(client, config()).await;

    chat(&gateway)
        .await
        .assert_error(503, "upstream_unavailable");
    let ready = get(&gateway, "/readyz").await;
    let reason = ready.assert_error(503, "upstream_unavailable");
    assert!(reason.contains("token"), "{reason}");
    assert!(emu.stats().iam_status(503) >= 1);
    assert_eq!(emu.stats().chat_requests, 0);

    // IAM back: ready again once the manager's backoff (at most 1 s after one failure)
    // has run out.
    emu.set_fault_probability(0.0, 18, &[Route::Iam]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ready = get(&gateway, "/readyz").await;
        if ready.status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{ready:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn iams_retry_after_reaches_the_client() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::status(503).with_header("retry-after", "30"),
    );
    let client = client_builder(&emu).fetch_attempts(1).build().unwrap();
    let gateway = Served::with(client, config()).await;

    let answer = chat(&gateway).await;

    answer.assert_error(503, "upstream_unavailable");
    assert_eq!(answer.header("retry-after"), Some("30"), "{answer:?}");
    assert_eq!(emu.stats().iam_requests, 1, "IAM's wait is not hammered");
    assert_eq!(emu.stats().chat_requests, 0);
}

/// A probe's own timeout is a few seconds: `/readyz` answers within 5 s even when IAM takes
/// longer (paused clock: IAM's latency and the gateway's limit are tokio timers).
#[tokio::test(start_paused = true)]
async fn readyz_answers_within_5_seconds_when_iam_hangs() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_secs(60));
    let client = client_builder(&emu)
        .fetch_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let gateway = Served::with(client, config()).await;

    let started = tokio::time::Instant::now();
    let ready = Answer::of(
        http()
            .get(gateway.at("/readyz"))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap(),
    )
    .await;

    let reason = ready.assert_error(503, "upstream_unavailable");
    assert!(reason.contains("5s"), "{reason}");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(5), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
}
