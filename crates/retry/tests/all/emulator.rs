//! The tower stack against the emulator: retry → auth → a reqwest transport.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Route};
use evolution_retry::{BoxError, NoRetry, RetryConfig, RetryLayer};
use evolution_testkit::transport;
use evolution_token::{AuthLayer, Credentials, TokenManager};
use http::{Request, Response};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

// The emulator and its key: the set-up shared with the other crates' tests.
pub(crate) use evolution_testkit::{KEY, SECRET, emulator};

/// Concurrent calls in the storm scenarios.
pub(crate) const STORM: u64 = 100;

pub(crate) fn tokens(emu: &Emulator) -> TokenManager {
    TokenManager::builder(Credentials::new(KEY, SECRET))
        .auth_url(emu.auth_url())
        .build()
        .expect("valid token configuration")
}

pub(crate) fn chat_body() -> String {
    format!(r#"{{"model":"{DEMO_MODEL}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// Every chat call fails with 503.
pub(crate) fn fail_everything(emu: &Emulator) {
    emu.set_random_faults(vec![Fault::status(503)]);
    emu.set_fault_probability(1.0, 7, &[Route::Chat]);
}

/// The attempts' start times, as seen below the retry layer.
#[derive(Clone, Default)]
pub(crate) struct Attempts(Arc<Mutex<Vec<Instant>>>);

impl Attempts {
    pub(crate) fn record(&self) {
        self.0.lock().unwrap().push(Instant::now());
    }

    pub(crate) fn gaps(&self) -> Vec<Duration> {
        let times = self.0.lock().unwrap();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

fn stack(
    emu: &Emulator,
    config: RetryConfig,
    attempts: Attempts,
) -> impl Service<Request<Bytes>, Response = Response<Bytes>, Error = BoxError, Future = impl Send>
+ Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .layer(RetryLayer::new(config))
        .layer(AuthLayer::new(tokens(emu)))
        // Each attempt's start, as the transport sees it.
        .map_request(move |request: Request<Bytes>| {
            attempts.record();
            request
        })
        .service(transport())
}

fn chat_request(emu: &Emulator) -> Request<Bytes> {
    Request::post(format!("{}/chat/completions", emu.base_url()))
        .header("content-type", "application/json")
        .body(Bytes::from(chat_body()))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn tower_recovers_from_two_503s() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(503));
    emu.push_fault(Route::Chat, Fault::status(503));
    let service = stack(&emu, RetryConfig::default(), Attempts::default());
    let response = service.oneshot(chat_request(&emu)).await.unwrap();
    assert_eq!(response.status(), 200);
    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 3);
    assert_eq!(stats.chat_status(503), 2);
    assert_eq!(stats.iam_requests, 1, "one token for every attempt");
}

#[tokio::test(start_paused = true)]
async fn a_request_marked_no_retry_is_sent_once() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(503));
    let service = stack(&emu, RetryConfig::default(), Attempts::default());
    let mut request = chat_request(&emu);
    request.extensions_mut().insert(NoRetry);
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 503, "the answer comes back as it was");
    assert_eq!(emu.stats().chat_requests, 1);
    // Unmarked, the same answer is retried.
    emu.push_fault(Route::Chat, Fault::status(503));
    let response = service.oneshot(chat_request(&emu)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(emu.stats().chat_requests, 3);
}

#[tokio::test(start_paused = true)]
async fn tower_waits_for_retry_after() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "1"),
    );
    let attempts = Attempts::default();
    let service = stack(&emu, RetryConfig::default(), attempts.clone());
    let response = service.oneshot(chat_request(&emu)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(emu.stats().chat_requests, 2);
    let gaps = attempts.gaps();
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn tower_does_not_retry_a_400() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::status(400));
    let service = stack(&emu, RetryConfig::default(), Attempts::default());
    let response = service.oneshot(chat_request(&emu)).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(emu.stats().chat_requests, 1);
}

#[tokio::test(start_paused = true)]
async fn tower_retries_a_dropped_connection() {
    let emu = emulator().await;
    emu.push_fault(Route::Chat, Fault::close());
    let service = stack(&emu, RetryConfig::default(), Attempts::default());
    let response = service.oneshot(chat_request(&emu)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(emu.stats().chat_status(200), 1);
}

/// The bound the storm tests assert: 100 first attempts, plus what the default budget allows
/// for them (10 retries/s × 10 s of reserve + 20% of 100 requests = 120), where 3 attempts
/// each would be 300.
pub(crate) fn storm_bound(config: &RetryConfig) -> u64 {
    STORM + config.budget_retries(STORM)
}

#[tokio::test(start_paused = true)]
async fn tower_storm_is_bounded_by_the_budget() {
    let emu = emulator().await;
    fail_everything(&emu);
    let config = RetryConfig::default();
    let bound = storm_bound(&config);
    assert_eq!(bound, 220);
    let service = stack(&emu, config, Attempts::default());
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..STORM {
        calls.spawn(service.clone().oneshot(chat_request(&emu)));
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(result.unwrap().unwrap().status(), 503);
    }
    let attempts = emu.stats().chat_requests;
    assert!(attempts <= bound, "{attempts} attempts, bound {bound}");
    // Every retry the budget could pay for was made: the budget, not the attempt limit, bound it.
    assert_eq!(attempts, bound);
}

#[tokio::test(start_paused = true)]
async fn tower_returns_at_once_when_retry_after_overruns_the_deadline() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "30"),
    );
    let config = RetryConfig::builder()
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let service = stack(&emu, config, Attempts::default());
    let started = Instant::now();
    let response = service.oneshot(chat_request(&emu)).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(emu.stats().chat_requests, 1);
    assert!(started.elapsed() < Duration::from_secs(1), "no sleep");
}
