//! The calls the loopback benchmarks make, shared by `benches/stack_overhead.rs` and the
//! `stack_calls` example (which runs one of them in a plain process for profilers).

// Benchmarks measure real elapsed time.
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use evolution_client::RetryConfig;
use evolution_client::stack::EvolutionService;
use evolution_client::token::TokenManager;
use evolution_client::{ChatResponse, EvolutionInference, EvolutionInferenceBuilder, Metrics};
use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use serde::Serialize;
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower::retry::budget::Budget;

use crate::{BACKUP_KEY_ID, BACKUP_SECRET, Server};

/// Calls in flight at once.
pub const IN_FLIGHT: usize = 64;
/// The per-attempt timeout of the client under test.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Its total timeout: longer than one attempt's, as one would set it, so both timers run.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(120);
/// The prompt every call sends.
pub const PROMPT: &str = "Привет!";

/// The client as the builder makes it by default, for `server`: the demo key alone, the
/// default retries, the client's own `Stats`, the per-attempt timeout and no total one.
pub fn default_client_builder(server: &Server) -> EvolutionInferenceBuilder {
    EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id(DEMO_KEY_ID)
        .secret(DEMO_SECRET)
        .base_url(server.base_url())
        .auth_url(server.auth_url())
}

/// The client under test, for `server`, with every layer the stack has: the demo key with
/// a backup key, a metrics handle, and both timeouts.
pub fn client_builder(server: &Server) -> EvolutionInferenceBuilder {
    default_client_builder(server)
        .backup_credentials(BACKUP_KEY_ID, BACKUP_SECRET)
        .metrics(Metrics::new())
        .request_timeout(TIMEOUT)
        .total_timeout(TOTAL_TIMEOUT)
}

/// The client under test, warmed up against `server`, and what the bare cases send with.
#[derive(Debug)]
pub struct Warm {
    /// [`client_builder`]'s client, after one answered `invoke` (its token is cached).
    pub client: EvolutionInference,
    /// The `Authorization` value of the client's token, for the bare cases.
    pub bearer: HeaderValue,
    /// The chat completions URI.
    pub uri: Uri,
}

impl Warm {
    /// Builds the client for `server` and makes one call on `runtime`.
    pub fn new(server: &Server, runtime: &Runtime) -> Self {
        let client = client_builder(server).build().expect("a valid client");
        let answer = runtime
            .block_on(client.invoke(PROMPT))
            .expect("the client works");
        assert!(answer.ends_with(PROMPT), "unexpected answer {answer:?}");
        let bearer = runtime
            .block_on(client.token_manager().get_token())
            .expect("a token")
            .bearer_header();
        let uri = format!("{}/chat/completions", server.base_url())
            .parse()
            .expect("a URI");
        Self {
            client,
            bearer,
            uri,
        }
    }
}

/// The body `invoke(PROMPT)` sends with the client's defaults.
pub fn chat_body() -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "model": DEMO_MODEL,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 512,
            "temperature": 1.0,
            "top_p": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "n": 1,
            "stream": false,
        }))
        .expect("JSON"),
    )
}

/// A chat request as `EvolutionInference` builds it (no headers: the stack sets them), or,
/// with `bearer`, as a caller of the bare transport must build it.
pub fn chat_request(uri: &Uri, body: &Bytes, bearer: Option<&HeaderValue>) -> Request<Bytes> {
    let mut request = Request::new(body.clone());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri.clone();
    if let Some(bearer) = bearer {
        let headers = request.headers_mut();
        headers.insert(AUTHORIZATION, bearer.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    request
}

/// The request `invoke` encodes, as a user of bare `reqwest` and `serde` would write it.
#[derive(Debug, Serialize)]
pub struct WireRequest<'a> {
    /// The model.
    pub model: &'a str,
    /// The one user message.
    pub messages: [WireMessage<'a>; 1],
    /// The client's default, 512.
    pub max_tokens: u32,
    /// The client's default, 1.0.
    pub temperature: f64,
    /// The client's default, 1.0.
    pub top_p: f64,
    /// The client's default, 0.0.
    pub frequency_penalty: f64,
    /// The client's default, 0.0.
    pub presence_penalty: f64,
    /// The client's default, 1.
    pub n: u32,
    /// `false`.
    pub stream: bool,
}

/// One chat message of [`WireRequest`].
#[derive(Debug, Serialize)]
pub struct WireMessage<'a> {
    /// `"user"`.
    pub role: &'a str,
    /// The prompt.
    pub content: &'a str,
}

/// The request `invoke(PROMPT)` encodes, with the client's defaults.
fn wire_request() -> WireRequest<'static> {
    WireRequest {
        model: DEMO_MODEL,
        messages: [WireMessage {
            role: "user",
            content: PROMPT,
        }],
        max_tokens: 512,
        temperature: 1.0,
        top_p: 1.0,
        frequency_penalty: 0.0,
        presence_penalty: 0.0,
        n: 1,
        stream: false,
    }
}

/// Runs `iters` calls of `call` with `IN_FLIGHT` workers on `runtime`; the wall time.
pub fn in_flight<F, Fut>(runtime: &Runtime, iters: u64, call: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    runtime.block_on(async move {
        let issued = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let workers: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (issued, call) = (issued.clone(), call.clone());
                tokio::spawn(async move {
                    while issued.fetch_add(1, Ordering::Relaxed) < iters {
                        call().await;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.expect("no worker panics");
        }
        start.elapsed()
    })
}

/// Where a bare `reqwest` call posts.
#[derive(Debug, Clone)]
pub enum Target {
    /// The URL as text, which reqwest parses for every request, as in its examples
    /// (`client.post("https://…")`).
    Text(String),
    /// The URL parsed once beforehand; each request takes a clone.
    Parsed(reqwest::Url),
}

impl Target {
    /// Both forms of `uri`, text first.
    pub fn both(uri: &Uri) -> [Self; 2] {
        let text = uri.to_string();
        let parsed = reqwest::Url::parse(&text).expect("a URL");
        [Self::Text(text), Self::Parsed(parsed)]
    }

    /// A POST to this target.
    fn post(&self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        match self {
            Self::Text(url) => http.post(url),
            Self::Parsed(url) => http.post(url.clone()),
        }
    }
}

/// One call of `bare_reqwest`: the chat body with a fixed `Authorization` header.
pub fn bare_call(
    http: reqwest::Client,
    url: Target,
    body: Bytes,
    bearer: HeaderValue,
) -> impl Fn() -> BoxedCall + Clone + Send + 'static {
    move || {
        let request = url
            .post(&http)
            .header(AUTHORIZATION, bearer.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
        Box::pin(async move {
            let response = request.send().await.expect("the server answers");
            assert!(response.status().is_success());
            black_box(response.bytes().await.expect("a body"));
        })
    }
}

/// One call of `bare_reqwest_json`: `invoke`'s work with `reqwest` and `serde` alone.
pub fn bare_json_call(
    http: reqwest::Client,
    url: Target,
    bearer: HeaderValue,
) -> impl Fn() -> BoxedCall + Clone + Send + 'static {
    move || {
        let body = serde_json::to_vec(&wire_request()).expect("JSON");
        let request = url
            .post(&http)
            .header(AUTHORIZATION, bearer.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        Box::pin(async move {
            let response = request.send().await.expect("the server answers");
            assert!(response.status().is_success());
            let bytes = response.bytes().await.expect("a body");
            let answer: ChatResponse = serde_json::from_slice(&bytes).expect("a chat completion");
            let text = answer
                .choices
                .into_iter()
                .next()
                .expect("a choice")
                .message
                .content;
            black_box(text);
        })
    }
}

/// One call of `invoke`: `client.invoke(PROMPT)`.
pub fn invoke_call(client: EvolutionInference) -> impl Fn() -> BoxedCall + Clone + Send + 'static {
    move || -> BoxedCall {
        let client = client.clone();
        Box::pin(async move {
            black_box(client.invoke(PROMPT).await.expect("an answer"));
        })
    }
}

/// One call of `fused`, an experiment: what `invoke` does with the builder's defaults (a
/// cached token, a resend after a 401, up to 3 attempts with a backoff on 429 and 5xx paid
/// for from a retry budget that each call pays into, a per-attempt timeout, the call
/// recorded in `metrics`, JSON both ways) written as one async function over `reqwest`,
/// with no tower layers and one timer per attempt covering the answer's body too. Simpler
/// than the client where the loopback run never goes (no jitter, a failure panics). It
/// shows what the features cost without the layering; it is not a client.
pub fn fused_call(
    http: reqwest::Client,
    url: reqwest::Url,
    tokens: TokenManager,
    metrics: Metrics,
) -> impl Fn() -> BoxedCall + Clone + Send + 'static {
    let budget = Arc::new(RetryConfig::default().new_budget());
    move || {
        let (http, url) = (http.clone(), url.clone());
        let (tokens, metrics, budget) = (tokens.clone(), metrics.clone(), budget.clone());
        Box::pin(async move {
            let start = tokio::time::Instant::now();
            budget.deposit();
            let body = Bytes::from(serde_json::to_vec(&wire_request()).expect("JSON"));
            let (mut attempts, mut resent) = (0, false);
            let answer = loop {
                attempts += 1;
                let token = tokens.get_token().await.expect("a token");
                let request = http
                    .post(url.clone())
                    .header(AUTHORIZATION, token.bearer_header())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
                let sent = tokio::time::timeout(TIMEOUT, async move {
                    let response = request.send().await?;
                    let status = response.status();
                    Ok::<_, reqwest::Error>((status, response.bytes().await?))
                })
                .await;
                let (status, bytes) = sent.expect("in time").expect("an answer");
                if status == http::StatusCode::UNAUTHORIZED && !resent {
                    tokens.invalidate_if_current(&token);
                    resent = true;
                } else if (status.as_u16() == 429 || status.is_server_error())
                    && attempts < 3
                    && budget.withdraw()
                {
                    tokio::time::sleep(Duration::from_millis(100 << attempts)).await;
                } else {
                    break (status, bytes);
                }
            };
            let (status, bytes) = answer;
            let outcome = evolution_client::metrics::Outcome::from_status(status);
            metrics.record_request(outcome, Some(status), start.elapsed(), attempts);
            let answer: ChatResponse = serde_json::from_slice(&bytes).expect("a chat completion");
            let text = answer.choices.into_iter().next().expect("a choice");
            black_box(text.message.content);
        })
    }
}

/// One call through `service` as a user of `EvolutionInference::service()` makes it (a
/// clone of the stack per call, `oneshot`), reading the whole answer; `bearer` is set when
/// the service does not authenticate requests itself.
pub fn service_call(
    service: EvolutionService,
    uri: Uri,
    body: Bytes,
    bearer: Option<HeaderValue>,
) -> impl Fn() -> BoxedCall + Clone + Send + 'static {
    move || {
        let request = chat_request(&uri, &body, bearer.as_ref());
        let service = service.clone();
        Box::pin(async move {
            let response = service.oneshot(request).await.expect("the stack answers");
            assert!(response.status().is_success());
            black_box(response.into_body().collect().await.expect("a body"));
        })
    }
}

/// One call of `EvolutionInference::send` with the request [`service_call`] sends (on the
/// instance of the stack its thread borrows, as `invoke` calls it), reading the whole
/// answer.
pub fn send_call(
    client: EvolutionInference,
    uri: Uri,
    body: Bytes,
) -> impl Fn() -> BoxedCall + Clone + Send + 'static {
    move || {
        let request = chat_request(&uri, &body, None);
        let client = client.clone();
        Box::pin(async move {
            let response = client.send(request).await.expect("the client answers");
            assert!(response.status().is_success());
            black_box(response.into_body().collect().await.expect("a body"));
        })
    }
}

/// Every case boxes its call future the same way, so that no case pays for it alone.
pub type BoxedCall = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
