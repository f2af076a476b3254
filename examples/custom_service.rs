//! The layers in a service of your own. Everything `EvolutionInference` does is a layer you
//! can stack yourself:
//!
//! 1. **tower**: an axum server whose `/ask` handler proxies a prompt to Evolution through
//!    `MetricsLayer` + `RetryLayer` + `AuthLayer` over `HttpTransport`, stacked with
//!    `ServiceBuilder`. (To reuse the whole stack of a client instead, call
//!    `llm.service()`: the same `Service<http::Request<Bytes>>`.)
//! 2. **reqwest-middleware**: the same token management and retries for code that already
//!    uses a `reqwest_middleware::ClientWithMiddleware`: `AuthMiddleware` and
//!    `RetryConfig::into_middleware()`.
//!
//! Both share one `TokenManager`: one IAM token for the whole process. On the embedded
//! emulator each path meets one transient 503, which its retry layer absorbs.
//!
//! `cargo run --example custom_service`

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use evolution_client::metrics::AttemptCounterLayer;
use evolution_client::retry::{RetryEvent, RetryLayer};
use evolution_client::stack::EvolutionService;
use evolution_client::{Body, HttpTransport, Metrics, RetryConfig};
use evolution_emulator::{Fault, Route};
use evolution_examples::Target;
use evolution_token::{AuthLayer, AuthMiddleware, BoxError, TokenManager};
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

/// What the axum handlers share: the Evolution stack and where to send requests.
#[derive(Clone)]
struct AppState {
    llm: EvolutionService,
    chat_url: String,
    model: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let target = Target::pick().await;
    let chat_url = format!(
        "{}/chat/completions",
        target.base_url().trim_end_matches('/')
    );

    // The metrics handle records calls, retries and token refreshes (it is the token
    // manager's observer too).
    let metrics = Metrics::builder()
        .label("client", "custom-service")
        .build()?;
    // One token manager for the process: first use fetches, then it refreshes ahead of expiry.
    let tokens = TokenManager::builder(target.credentials()?)
        .auth_url(target.auth_url())
        .observer(metrics.clone())
        .build()?;
    let retry = RetryConfig::builder()
        .base_delay(Duration::from_millis(200))
        .build()?;

    // --- 1. tower: the layers in an axum service -------------------------------------
    let observer = metrics.clone();
    let stack = ServiceBuilder::new()
        // One observation per call (latency, outcome), outermost.
        .layer(metrics.layer())
        // Transient failures are retried; each retry is reported to the metrics handle.
        .layer(RetryLayer::new(
            retry
                .to_builder()
                .observer(move |event: &RetryEvent| observer.record_retry(event.reason.label()))
                .build()?,
        ))
        // Counts attempts per call for the metrics layer (it must sit under the retries).
        .layer(AttemptCounterLayer::new())
        // `Authorization: Bearer` from the token manager; a 401 refreshes it and resends once.
        .layer(AuthLayer::new(tokens.clone()))
        // A limit per attempt.
        .timeout(Duration::from_secs(60))
        .service(HttpTransport::new(reqwest::Client::new()));
    let state = AppState {
        llm: BoxCloneSyncService::new(stack),
        chat_url: chat_url.clone(),
        model: target.model(),
    };
    let app = Router::new().route("/ask", post(ask)).with_state(state);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!("1. tower: an axum service at http://{addr}/ask proxies prompts to Evolution.");

    if let Some(emulator) = target.emulator() {
        emulator.push_fault(Route::Chat, Fault::status(503));
    }
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/ask"))
        .body("Что такое tower?")
        .send()
        .await?;
    println!(
        "   POST /ask → {} {}",
        response.status(),
        String::from_utf8_lossy(&response.bytes().await?)
    );
    let stats = metrics.stats();
    println!(
        "   metrics.stats(): {} call(s), {} retry(ies), {} token(s) obtained",
        stats.total_requests, stats.retries, stats.successful_refreshes
    );
    let _ = stop.send(());
    server.await??;
    println!("   the axum service has shut down.");

    // --- 2. reqwest-middleware -------------------------------------------------------
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        // Retries outside authentication, so that every attempt carries a valid token.
        .with(retry.into_middleware())
        .with(AuthMiddleware::new(tokens.clone()))
        .build();
    println!("2. reqwest-middleware: AuthMiddleware + RetryConfig::into_middleware().");
    if let Some(emulator) = target.emulator() {
        emulator.push_fault(Route::Chat, Fault::status(503));
    }
    let response = client
        .post(&chat_url)
        .header(CONTENT_TYPE, "application/json")
        .body(chat_body(&target.model(), "Что такое reqwest-middleware?")?)
        .send()
        .await?;
    let status = response.status();
    let answer = answer_text(&response.bytes().await?)?;
    println!("   POST {chat_url} → {status} {answer}");

    if let Some(emulator) = target.emulator() {
        let seen = emulator.stats();
        println!(
            "\nthe emulator: chat answers {:?}, IAM requests {} (one token shared by both stacks)",
            seen.chat_by_status, seen.iam_requests
        );
    }
    Ok(())
}

/// `POST /ask`: the body is the prompt, the answer is the model's text.
async fn ask(
    State(state): State<AppState>,
    prompt: String,
) -> Result<String, (StatusCode, String)> {
    let bad_gateway = |error: BoxError| (StatusCode::BAD_GATEWAY, error.to_string());
    let request = http::Request::post(&state.chat_url)
        .header(CONTENT_TYPE, "application/json")
        .body(chat_body(&state.model, &prompt).map_err(bad_gateway)?)
        .map_err(|error| bad_gateway(error.into()))?;
    let response = state.llm.oneshot(request).await.map_err(bad_gateway)?;
    let status = response.status();
    let body: Body = response.into_body();
    let body = body.collect().await.map_err(bad_gateway)?.to_bytes();
    if !status.is_success() {
        return Err((
            StatusCode::BAD_GATEWAY,
            format!(
                "Evolution answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    answer_text(&body).map_err(bad_gateway)
}

/// An OpenAI-compatible chat completion request with one user message.
fn chat_body(model: &str, prompt: &str) -> Result<Bytes, BoxError> {
    let body = json!({
        "model": model,
        "messages": [{ "role": "user", "content": prompt }],
        "max_tokens": 512,
    });
    Ok(serde_json::to_vec(&body)?.into())
}

/// The text of the first choice of a chat completion.
fn answer_text(body: &[u8]) -> Result<String, BoxError> {
    let answer: Value = serde_json::from_slice(body)?;
    answer["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no answer text in {answer}").into())
}
