//! The same scenarios through reqwest-middleware: `RetryTransientMiddleware` with this crate's
//! strategy and policy, then the auth middleware. The attempt counts match the tower stack's.

use std::time::Duration;

use evolution_emulator::{Emulator, Fault, Route};
use evolution_retry::{ReqwestRetryPolicy, RetryConfig};
use evolution_token::AuthMiddleware;
use http::Extensions;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};

use crate::emulator::{Attempts, STORM, chat_body, emulator, fail_everything, storm_bound, tokens};

/// Records when each attempt starts.
struct Record(Attempts);

#[async_trait::async_trait]
impl Middleware for Record {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.record();
        next.run(request, extensions).await
    }
}

fn client(emu: &Emulator, config: RetryConfig, attempts: Attempts) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(config.into_middleware())
        .with(Record(attempts))
        .with(AuthMiddleware::new(tokens(emu)))
        .build()
}

async fn chat(client: &ClientWithMiddleware, emu: &Emulator) -> reqwest::Response {
    client
        .post(format!("{}/chat/completions", emu.base_url()))
        .header("content-type", "application/json")
        .body(chat_body())
        .send()
        .await
        .expect("an HTTP answer")
}

#[tokio::test(start_paused = true)]
async fn middleware_recovers_from_two_503s() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(503));
    emu.push_fault(Route::Chat, Fault::status(503));
    let client = client(&emu, RetryConfig::default(), Attempts::default());
    assert_eq!(chat(&client, &emu).await.status(), 200);
    assert_eq!(emu.stats().chat_requests, 3);
}

#[tokio::test(start_paused = true)]
async fn middleware_waits_for_retry_after() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "1"),
    );
    let attempts = Attempts::default();
    let client = client(&emu, RetryConfig::default(), attempts.clone());
    assert_eq!(chat(&client, &emu).await.status(), 200);
    assert_eq!(emu.stats().chat_requests, 2);
    let gaps = attempts.gaps();
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
}

/// The same decision as the tower layer: a wait beyond `max_retry_after` is not made.
#[tokio::test(start_paused = true)]
async fn middleware_does_not_retry_a_retry_after_beyond_the_cap() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "3600"),
    );
    let client = client(&emu, RetryConfig::default(), Attempts::default());
    let started = tokio::time::Instant::now();
    assert_eq!(chat(&client, &emu).await.status(), 429);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(emu.stats().chat_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn middleware_does_not_retry_a_400() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(400));
    let client = client(&emu, RetryConfig::default(), Attempts::default());
    assert_eq!(chat(&client, &emu).await.status(), 400);
    assert_eq!(emu.stats().chat_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn middleware_stops_after_max_attempts() {
    let emu = emulator().await;
    fail_everything(&emu);
    let client = client(&emu, RetryConfig::default(), Attempts::default());
    assert_eq!(chat(&client, &emu).await.status(), 503);
    assert_eq!(emu.stats().chat_requests, 3);
}

#[tokio::test(start_paused = true)]
async fn middleware_storm_is_bounded_by_the_budget() {
    let emu = emulator().await;
    fail_everything(&emu);
    let config = RetryConfig::default();
    let bound = storm_bound(&config);
    let client = client(&emu, config, Attempts::default());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..STORM {
        let client = client.clone();
        let url = format!("{}/chat/completions", emu.base_url());
        calls.spawn(async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(chat_body())
                .send()
                .await
        });
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(result.unwrap().unwrap().status(), 503);
    }
    let attempts = emu.stats().chat_requests;
    assert!(attempts <= bound, "{attempts} attempts, bound {bound}");
    assert_eq!(attempts, bound, "the same count as through tower");
}

#[tokio::test(start_paused = true)]
async fn one_budget_can_serve_both_stacks() {
    let layer = evolution_retry::RetryLayer::new(RetryConfig::default());
    let policy =
        ReqwestRetryPolicy::new(RetryConfig::default()).with_budget(layer.budget().clone());
    assert!(std::sync::Arc::ptr_eq(policy.budget(), layer.budget()));
}

#[tokio::test(start_paused = true)]
async fn middleware_returns_at_once_when_retry_after_overruns_the_deadline() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "30"),
    );
    let config = RetryConfig::builder()
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = client(&emu, config, Attempts::default());
    let started = tokio::time::Instant::now();
    assert_eq!(chat(&client, &emu).await.status(), 429);
    assert_eq!(emu.stats().chat_requests, 1);
    assert!(started.elapsed() < Duration::from_secs(1), "no sleep");
}
