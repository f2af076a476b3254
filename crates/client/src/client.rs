//! [`EvolutionInference`]: the typed chat API over the tower stack.

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::try_join_all;
use http::{HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::BodyExt;

use crate::chat::{ModelList, WireRequest};
use crate::counted_body::counted;
use crate::operation::{Kind, Operation, status_str};
use crate::params::{Params, validate_generation};
use crate::stack::{Built, EvolutionService, StackConfig};
use crate::stream_usage::AskUsage;
use crate::thread_stacks::Stacks;
use crate::watch::Watched;
use crate::watch::events::WatchedEvents;
use crate::watch::json::WatchedJson;
use crate::{
    Body, ChatRequest, ChatResponse, ChatStream, DeploymentKey, EmbeddingsRequest,
    EmbeddingsResponse, Error, EvolutionInferenceBuilder, Model, Result,
};
use crate::{HttpTransport, Usage};
use evolution_fallback::FallbackHandle;
use evolution_metrics::{DeploymentStats, Metrics, PendingCall, Stats, capture};
use evolution_pool::{PoolHandle, Served};
use evolution_retry::{RetryAfterTooLong, RetryConfig};
use evolution_token::{Credentials, TokenManager};
use serde::de::DeserializeOwned;
use tracing::Instrument;

/// Answers larger than this are refused instead of buffered.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A client for Cloud.ru Evolution inference with automatic token management.
///
/// The Rust counterpart of the reference `EvolutionInference`: the first call
/// fetches an IAM token, later calls reuse it, it is refreshed in the background
/// before it expires, and a 401 for a revoked token is retried once with a fresh
/// one, invisibly. `Clone` is cheap and shares the token cache and connection pool.
///
/// ```no_run
/// use evolution_client::EvolutionInference;
///
/// # async fn run() -> evolution_client::Result<()> {
/// let llm = EvolutionInference::builder()
///     .model("your-model")
///     .key_id("your-key-id")
///     .secret("your-secret")
///     .base_url("https://your-api-endpoint.com/v1")
///     .build()?;
/// let answer = llm.invoke("Привет!").await?;
/// println!("{answer}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EvolutionInference {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) stacks: Stacks,
    /// The base URL as configured, without a trailing slash.
    base_url: String,
    fallback: Option<FallbackHandle>,
    backup_tokens: Option<TokenManager>,
    pool: Option<PoolHandle>,
    /// The pool's deployments, in order (empty without a pool).
    deployments: Vec<DeploymentKey>,
    chat_url: Uri,
    embeddings_url: Uri,
    models_url: Uri,
    params: Params,
    tokens: TokenManager,
    config: StackConfig,
}

impl EvolutionInference {
    /// Starts configuring a client.
    pub fn builder() -> EvolutionInferenceBuilder {
        EvolutionInferenceBuilder::new()
    }

    /// A client configured from `EVOLUTION_MODEL`, `EVOLUTION_KEY_ID`,
    /// `EVOLUTION_SECRET` (or instead of both `EVOLUTION_API_KEY`), `EVOLUTION_BASE_URL`
    /// and (optionally) `EVOLUTION_TOKEN_URL`, read from the environment and a `.env` file.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable to set.
    pub fn from_env() -> Result<Self> {
        EvolutionInferenceBuilder::from_env().build()
    }

    pub(crate) fn new(
        built: Built<HttpTransport>,
        base: &url::Url,
        params: Params,
        tokens: TokenManager,
        backup_tokens: Option<TokenManager>,
        deployments: Vec<DeploymentKey>,
        config: StackConfig,
    ) -> Result<Self> {
        let base = base.as_str().trim_end_matches('/');
        let uri = |path: &str| {
            format!("{base}/{path}").parse::<Uri>().map_err(|error| {
                Error::config(
                    "base_url",
                    format!("`{base}` does not form a request URI: {error}"),
                )
            })
        };
        Ok(Self {
            inner: Arc::new(Inner {
                chat_url: uri("chat/completions")?,
                base_url: base.to_owned(),
                embeddings_url: uri("embeddings")?,
                models_url: uri("models")?,
                stacks: Stacks::new(built.stack),
                fallback: built.fallback,
                backup_tokens,
                pool: built.pool,
                deployments,
                params,
                tokens,
                config,
            }),
        })
    }

    /// Sends one user message and returns the first choice's text.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a 401 for a revoked token never reaches you (it is retried once).
    pub async fn invoke(&self, prompt: impl Into<String>) -> Result<String> {
        let request = ChatRequest::from_prompt(prompt);
        let (response, call) = self.complete(&request).await?;
        match response.choices.into_iter().next() {
            Some(choice) => verdict(call, Ok(choice.message.content)),
            None => verdict(call, Err(Error::Decode("the answer has no choices".into()))),
        }
    }

    /// Sends each prompt concurrently; the answers come back in prompt order.
    ///
    /// # Errors
    ///
    /// The first error of any prompt.
    pub async fn generate<I, P>(&self, prompts: I) -> Result<Vec<String>>
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        try_join_all(prompts.into_iter().map(|p| self.invoke(p))).await
    }

    /// A chat completion for `request`.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn chat(&self, request: ChatRequest) -> Result<ChatResponse> {
        let (response, call) = self.complete(&request).await?;
        verdict(call, Ok(response))
    }

    /// A non-streamed chat completion, in its span.
    async fn complete(&self, request: &ChatRequest) -> Result<(ChatResponse, Option<PendingCall>)> {
        let http = self.chat_request(request, false)?;
        let operation = self.operation(Kind::Chat, self.model_of(request), &self.inner.chat_url);
        self.observed(operation, http, "the chat completion").await
    }

    /// A streamed chat completion: chunks as the server sends them (Server-Sent Events).
    ///
    /// The stream ends after `data: [DONE]`; if the connection breaks before that, or the
    /// server sends an error inside the stream, its last item is an error (see
    /// [`ChatStream`]). Retries and the 401 resend apply until the response head has
    /// arrived. This returns once the first item has arrived: a stream whose first chunk
    /// does not come within `first_chunk_timeout` is sent again, as the retry policy
    /// allows, since nothing has reached you yet. The server is asked for the stream's
    /// token usage ([`ChatStream::usage`]). The call is counted in [`stats`](Self::stats)
    /// when the stream ends.
    ///
    /// # Errors
    ///
    /// See [`Error`], for failures before the first item; [`Error::StreamTimeout`] if no
    /// attempt's first chunk came in time.
    pub async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let started = tokio::time::Instant::now();
        let http = self.chat_request(&request, true)?;
        let operation = self.operation(Kind::Chat, self.model_of(&request), &self.inner.chat_url);
        let span = operation.span().clone();
        let mut operation = Some(operation);
        let config = &self.inner.config;
        let attempts = config.retry.as_ref().map_or(1, RetryConfig::max_attempts);
        let mut attempt = 1;
        loop {
            let sent = self
                .send_checked(http.clone())
                .instrument(span.clone())
                .await;
            let (response, call) = match sent {
                Ok(sent) => sent,
                Err(error) => {
                    if let Some(operation) = operation.take() {
                        operation.finish(Some(&error));
                    }
                    return Err(error);
                }
            };
            if let Some(operation) = operation.as_mut() {
                operation.served(response.extensions().get::<Served>().cloned());
            }
            let mut stream = ChatStream::new(
                response.into_body(),
                config.stream,
                started,
                call,
                operation.take(),
            );
            match stream.first().instrument(span.clone()).await {
                Ok(()) => return Ok(stream),
                // Nothing reached the caller: the request may go again, as the same logical
                // call, while the retry policy and the call's own limits allow.
                Err(timeout) if attempt < attempts && self.may_resend(started) => {
                    attempt += 1;
                    if let Some(call) = stream.take_call() {
                        call.resent();
                    }
                    config.metrics.record_retry(timeout.as_str());
                    tracing::debug!(parent: &span, attempt, "no first chunk in time: sending the stream's request again");
                    operation = stream.take_operation();
                }
                Err(timeout) => {
                    let error = Error::StreamTimeout(timeout);
                    if let Some(call) = stream.take_call() {
                        call.body_error();
                    }
                    if let Some(operation) = stream.take_operation() {
                        operation.finish(Some(&error));
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Whether a stream's request may be sent again, `started` at its call's start: only if
    /// the call's total limit and the stream's both leave room for the whole next attempt.
    fn may_resend(&self, started: tokio::time::Instant) -> bool {
        let config = &self.inner.config;
        // The next attempt's worst case: its head, then its wait for a first chunk.
        let by_end = started.elapsed() + config.request_timeout + config.stream.first_chunk;
        [config.total_timeout, config.stream.total]
            .into_iter()
            .flatten()
            .all(|limit| by_end <= limit)
    }

    /// Embeddings of one or more texts (`POST {base_url}/embeddings`), through the same
    /// stack as [`chat`](Self::chat): token, 401 resend, retries, fallback, timeouts and
    /// metrics apply.
    ///
    /// The request's model defaults to the client's [`model`](Self::model), which is usually
    /// a chat model: name the embedding model on the request.
    ///
    /// ```no_run
    /// use evolution_client::{EmbeddingsRequest, EvolutionInference};
    ///
    /// # async fn run() -> evolution_client::Result<()> {
    /// let llm = EvolutionInference::from_env()?;
    /// let answer = llm
    ///     .embeddings(
    ///         EmbeddingsRequest::many(["Rust is fast.", "Python is popular."])
    ///             .model("ai-sage/Giga-Embeddings-instruct-3B"),
    ///     )
    ///     .await?;
    /// for vector in answer.vectors() {
    ///     println!("{} dimensions", vector.len());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// See [`Error`]; [`Error::Config`] for a request without any text.
    pub async fn embeddings(
        &self,
        request: impl Into<EmbeddingsRequest>,
    ) -> Result<EmbeddingsResponse> {
        let request = request.into();
        let body = request.to_body(&self.inner.params.model)?;
        let model = request.model.as_deref().unwrap_or(&self.inner.params.model);
        let operation = self.operation(Kind::Embeddings, model, &self.inner.embeddings_url);
        let mut http = Request::new(body);
        *http.method_mut() = Method::POST;
        *http.uri_mut() = self.inner.embeddings_url.clone();
        let (response, call) = self
            .observed::<EmbeddingsResponse>(operation, http, "the embeddings answer")
            .await?;
        verdict(call, Ok(response.in_input_order()))
    }

    /// The models the endpoint serves.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub async fn models(&self) -> Result<Vec<Model>> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(self.inner.models_url.clone())
            .body(Bytes::new())
            .map_err(|error| Error::Decode(error.to_string()))?;
        let (list, call, _) = self.answer::<ModelList>(request, "the model list").await?;
        verdict(call, Ok(list.data))
    }

    /// The token manager of the (primary) key: its `info()`, `invalidate()`,
    /// `set_credentials(..)` and monitor. With deployments, the first deployment's (see
    /// [`deployments`](Self::deployments)).
    pub fn token_manager(&self) -> &TokenManager {
        &self.inner.tokens
    }

    /// The in-process statistics (the reference's `get_stats()`): requests, successes,
    /// auth errors, success rate, average/p50/p99 latency, token refreshes, retries,
    /// fallback switches and which key serves; with deployments, each one's state.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.config.metrics.stats();
        if let Some(pool) = &self.inner.pool {
            stats.deployments = pool
                .deployments()
                .iter()
                .map(DeploymentStats::from_status)
                .collect();
        }
        stats
    }

    /// The pool's handle (each deployment's state, calls in flight), when the client has
    /// [deployments](crate::EvolutionInferenceBuilder::deployment).
    pub fn pool(&self) -> Option<&PoolHandle> {
        self.inner.pool.as_ref()
    }

    /// Each deployment's name, token manager and base URL, in the configured order: empty
    /// without deployments. `evolution token` checks every key with them.
    pub fn deployments(&self) -> &[DeploymentKey] {
        &self.inner.deployments
    }

    /// The metrics handle this client records to.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.config.metrics
    }

    /// The backup key's token manager, when a backup key is configured.
    pub fn backup_token_manager(&self) -> Option<&TokenManager> {
        self.inner.backup_tokens.as_ref()
    }

    /// The fallback handle (which key serves, how often it changed, `rotate()`), when a
    /// backup key is configured.
    pub fn fallback(&self) -> Option<&FallbackHandle> {
        self.inner.fallback.as_ref()
    }

    /// Whether the primary key serves (always, without a backup key).
    pub fn using_primary(&self) -> bool {
        self.inner
            .fallback
            .as_ref()
            .is_none_or(FallbackHandle::using_primary)
    }

    /// Replaces the primary key while requests run (key rotation). Its cached token is
    /// dropped at once; if traffic had moved to the backup key, the next request tries
    /// the new primary key.
    ///
    /// With [deployments](crate::EvolutionInferenceBuilder::deployment), the primary key is
    /// the first deployment's, and its cooldown, if any, runs on: rotate a deployment's
    /// key through its own [`DeploymentKey::token_manager`] (`set_credentials` there), or
    /// rebuild the client from the new file.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the key id or secret is empty; the old key stays in use.
    pub fn set_credentials(
        &self,
        key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<()> {
        self.inner
            .tokens
            .set_credentials(Credentials::new(key_id, secret))
            .map_err(|error| Error::from_token(error, None))?;
        if let Some(fallback) = &self.inner.fallback {
            fallback.probe_now();
        }
        Ok(())
    }

    /// Replaces the primary key with a static API key while requests run (rotation of a key
    /// that expires, or a move between a key id and an API key), as
    /// [`set_credentials`](Self::set_credentials) does. See
    /// [`EvolutionInferenceBuilder::api_key`](crate::EvolutionInferenceBuilder::api_key).
    ///
    /// ```
    /// use evolution_client::EvolutionInference;
    ///
    /// let llm = EvolutionInference::builder()
    ///     .model("your-model")
    ///     .api_key("this-years-key")
    ///     .base_url("https://your-api-endpoint.com/v1")
    ///     .build()?;
    /// llm.set_api_key("next-years-key")?;
    /// # Ok::<(), evolution_client::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the key is empty or holds whitespace; the old key stays in use.
    pub fn set_api_key(&self, api_key: impl Into<String>) -> Result<()> {
        self.inner
            .tokens
            .set_credentials(Credentials::api_key(api_key))
            .map_err(|error| Error::from_token(error, None))?;
        if let Some(fallback) = &self.inner.fallback {
            fallback.probe_now();
        }
        Ok(())
    }

    /// Replaces the backup key while requests run.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if no backup key was configured, or the key id or secret is empty.
    pub fn set_backup_credentials(
        &self,
        key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Result<()> {
        let Some(backup) = &self.inner.backup_tokens else {
            return Err(Error::config(
                "backup_credentials",
                "no backup key was configured: call .backup_credentials(..) on the builder first",
            ));
        };
        backup
            .set_credentials(Credentials::new(key_id, secret))
            .map_err(|error| Error::from_token(error, Some("backup_credentials")))
    }

    /// Sends a request you built through the client's stack, as [`chat`](Self::chat) sends
    /// its own: the token, the 401 resend, retries, fallback, timeouts and metrics apply,
    /// and the call borrows its thread's instance of the stack instead of cloning one.
    ///
    /// The request needs a method, an absolute URI (the [`base_url`](Self::base_url) and a
    /// path, such as `/chat/completions`) and a body; the stack sets `Authorization`, and
    /// `Content-Type: application/json` unless the request has one. Every status comes back
    /// as a response, with its body unread, as [`service`](Self::service) gives it: an error
    /// status is not turned into [`Error::Api`].
    ///
    /// The call is counted in [`stats`](Self::stats) as `chat` counts it, but when the
    /// body ends: a success is `ok` once its last frame has been read, `body_error` if a
    /// frame fails, and `cancelled` if the body is dropped before its end; an error status
    /// is counted when it arrives. What the bytes say is not judged: an error event
    /// inside a `200` event stream is `ok` here (use [`stream`](Self::stream) for that).
    ///
    /// A chat completion or embeddings request (a `POST` to `…/chat/completions` or
    /// `…/embeddings` with a JSON object body) is also a GenAI operation, as
    /// [`chat`](Self::chat)'s are: its span (`chat {model}`), its token usage, time to first
    /// chunk and time per chunk are recorded from the answer as it passes, without holding
    /// it back. A streamed chat request without `stream_options` of its own is sent asking
    /// for its usage (`stream_options.include_usage`), and the usage-only chunk this adds is
    /// taken out of the answer: the body you read has exactly the events you asked for.
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use evolution_client::{EvolutionInference, Error};
    /// use http_body_util::BodyExt;
    ///
    /// # async fn run() -> evolution_client::Result<()> {
    /// let llm = EvolutionInference::from_env()?;
    /// let request = http::Request::post(format!("{}/chat/completions", llm.base_url()))
    ///     .body(Bytes::from_static(
    ///         br#"{"model":"your-model","messages":[{"role":"user","content":"Hi"}]}"#,
    ///     ))
    ///     .expect("a valid request");
    /// let response = llm.send(request).await?;
    /// let status = response.status();
    /// // Counted in `llm.stats()` once the body has been read to its end.
    /// let body = response.into_body().collect().await.map_err(Error::Transport)?;
    /// println!("{status}: {:?}", body.to_bytes());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// See [`Error`], for failures before the response head; a 401 for a revoked token
    /// never reaches you (it is resent once with a fresh token).
    pub async fn send(&self, mut request: Request<Bytes>) -> Result<Response<Body>> {
        let Some(watched) = Watched::of(&request) else {
            let (response, call) = self.call(request).await?;
            return Ok(response.map(|body| counted(body, call)));
        };
        let strip = watched.asks_usage();
        if strip {
            request.extensions_mut().insert(AskUsage);
        }
        let model = if watched.model.is_empty() {
            self.model()
        } else {
            &watched.model
        };
        let mut operation = self.operation(watched.kind, model, request.uri());
        let span = operation.span().clone();
        let (response, call) = match self.call(request).instrument(span).await {
            Ok(answer) => answer,
            Err(error) => {
                operation.finish(Some(&error));
                return Err(error);
            }
        };
        if !response.status().is_success() {
            operation.fail(status_str(response.status()));
            return Ok(response.map(|body| counted(body, call)));
        }
        operation.served(response.extensions().get::<Served>().cloned());
        let events = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        Ok(response.map(|body| {
            let watched = if events {
                WatchedEvents::new(body, strip, operation).boxed()
            } else {
                WatchedJson::new(body, operation).boxed()
            };
            counted(watched, call)
        }))
    }

    /// The assembled tower service, to call directly or wrap in layers of your own.
    ///
    /// Each call clones the stack (a dozen reference counts) and boxes it: to send a
    /// request you already hold, [`send`](Self::send) is cheaper. Its metrics record a call
    /// when the response head arrives: unlike this client's own methods, which count a
    /// `200` whose body then fails as `body_error`, it cannot see the body (open an
    /// [`evolution_metrics::capture`] around the call to do the same).
    pub fn service(&self) -> EvolutionService {
        EvolutionService::new(self.inner.stacks.stack())
    }

    /// The API base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The per-attempt limit (`request_timeout`).
    pub fn request_timeout(&self) -> std::time::Duration {
        self.inner.config.request_timeout
    }

    /// The model used when a request does not name one.
    pub fn model(&self) -> &str {
        &self.inner.params.model
    }

    fn chat_request(&self, request: &ChatRequest, stream: bool) -> Result<Request<Bytes>> {
        if request.messages.is_empty() {
            return Err(Error::config(
                "messages",
                "a chat request needs at least one message",
            ));
        }
        let params = &self.inner.params;
        let o = &request.overrides;
        let wire = WireRequest {
            model: o.model.as_deref().unwrap_or(&params.model),
            messages: &request.messages,
            max_tokens: o.max_tokens.unwrap_or(params.max_tokens),
            temperature: o.temperature.unwrap_or(params.temperature),
            top_p: o.top_p.unwrap_or(params.top_p),
            frequency_penalty: o.frequency_penalty.unwrap_or(params.frequency_penalty),
            presence_penalty: o.presence_penalty.unwrap_or(params.presence_penalty),
            stop: o.stop.as_deref().or(params.stop.as_deref()),
            n: o.n.unwrap_or(params.n),
            stream,
        };
        validate_generation(
            wire.max_tokens,
            wire.temperature,
            wire.top_p,
            wire.frequency_penalty,
            wire.presence_penalty,
            wire.n,
        )?;
        let body = serde_json::to_vec(&wire).map_err(|error| {
            Error::config("messages", format!("cannot be encoded as JSON: {error}"))
        })?;
        // No headers unless streaming: the stack sets Content-Type under the layers that
        // copy the request for resends, and an empty header map is copied for free.
        let mut request = Request::new(Bytes::from(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.inner.chat_url.clone();
        if stream {
            request.headers_mut().insert(
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
            request.extensions_mut().insert(AskUsage);
        }
        Ok(request)
    }

    /// Calls the stack and reads the whole answer as JSON: `what` names it in the error.
    /// A body that cannot be read or parsed is recorded as a body error in the metrics.
    async fn answer<T: DeserializeOwned>(
        &self,
        request: Request<Bytes>,
        what: &str,
    ) -> Result<(T, Option<PendingCall>, Option<Served>)> {
        let (response, call) = self.send_checked(request).await?;
        let served = response.extensions().get::<Served>().cloned();
        let parsed = match self.read_body(response.into_body()).await {
            Ok(body) => serde_json::from_slice(&body).map_err(|error| {
                Error::Decode(format!(
                    "{what} is not valid JSON of the expected shape ({error})"
                ))
            }),
            Err(error) => Err(error),
        };
        match parsed {
            Ok(parsed) => Ok((parsed, call, served)),
            Err(error) => verdict(call, Err(error)),
        }
    }

    /// Calls the stack; an error status becomes [`Error::Api`] with the server's message (or
    /// [`Error::QuotaExhausted`], [`Error::RetryAfterTooLong`]).
    ///
    /// The call is made in a metrics [`capture`]: a success head comes back with its
    /// [`PendingCall`], for the caller to record once it has read the body.
    async fn send_checked(
        &self,
        request: Request<Bytes>,
    ) -> Result<(Response<Body>, Option<PendingCall>)> {
        let (response, call) = self.call(request).await?;
        if response.status().is_success() {
            return Ok((response, call));
        }
        let status = response.status();
        if status.is_redirection() {
            let location = response.headers().get(header::LOCATION);
            return Err(Error::redirected(status, location, &self.inner.base_url));
        }
        let too_long = response.extensions().get::<RetryAfterTooLong>().copied();
        let body = self
            .read_body(response.into_body())
            .await
            .unwrap_or_default();
        Err(Error::from_answer(status, &body, too_long))
    }

    /// Calls the stack instance of this thread (see `thread_stacks`) in a metrics
    /// [`capture`]; any status is a response, a failure before the head an [`Error`].
    async fn call(&self, request: Request<Bytes>) -> Result<(Response<Body>, Option<PendingCall>)> {
        let config = &self.inner.config;
        let started = tokio::time::Instant::now();
        let (response, call) = capture(self.inner.stacks.call(request)).await;
        let response = response.map_err(|error| {
            // Both timeouts fail with the same `Elapsed`: name the one that stopped
            // the call. The total did if no further attempt would have fitted in it
            // (the retry layer gives up early then), the attempt limit otherwise.
            let limit = match config.total_timeout {
                Some(total) if started.elapsed() + config.request_timeout > total => total,
                _ => config.request_timeout,
            };
            Error::from_service(error, limit)
        })?;
        Ok((response, call))
    }

    /// The span and GenAI record of a call for `model` to `uri`.
    fn operation(&self, kind: Kind, model: &str, uri: &Uri) -> Operation {
        Operation::start(&self.inner.config.metrics, kind, model, uri)
    }

    /// The model a chat request asks for.
    fn model_of<'a>(&'a self, request: &'a ChatRequest) -> &'a str {
        request
            .overrides
            .model
            .as_deref()
            .unwrap_or(&self.inner.params.model)
    }

    /// [`answer`](Self::answer) in `operation`'s span; the answer's model and usage are
    /// recorded on it, and it ends with the call.
    async fn observed<T: DeserializeOwned + Answer>(
        &self,
        mut operation: Operation,
        request: Request<Bytes>,
        what: &str,
    ) -> Result<(T, Option<PendingCall>)> {
        let span = operation.span().clone();
        match self.answer::<T>(request, what).instrument(span).await {
            Ok((answer, call, served)) => {
                operation.served(served);
                operation.response_model(answer.model());
                if let Some(usage) = answer.usage() {
                    operation.usage(usage);
                }
                operation.finish(None);
                Ok((answer, call))
            }
            Err(error) => {
                operation.finish(Some(&error));
                Err(error)
            }
        }
    }

    async fn read_body(&self, body: Body) -> Result<Bytes> {
        let timeout = self.inner.config.request_timeout;
        tokio::time::timeout(timeout, read_limited(body))
            .await
            .unwrap_or(Err(Error::Timeout(timeout)))
    }
}

/// An answer that names its model and may report its usage.
trait Answer {
    fn model(&self) -> &str;
    fn usage(&self) -> Option<&Usage>;
}

impl Answer for ChatResponse {
    fn model(&self) -> &str {
        &self.model
    }
    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }
}

impl Answer for EmbeddingsResponse {
    fn model(&self) -> &str {
        &self.model
    }
    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }
}

/// Records the metrics verdict of a call whose body was read: `ok` if `result` is, else a
/// body error; returns `result`.
fn verdict<T>(call: Option<PendingCall>, result: Result<T>) -> Result<T> {
    if let Some(call) = call {
        match &result {
            Ok(_) => call.ok(),
            Err(_) => call.body_error(),
        }
    }
    result
}

/// Reads a whole body, refusing more than [`MAX_RESPONSE_BYTES`].
async fn read_limited(mut body: Body) -> Result<Bytes> {
    // A small answer usually arrives as one frame: it is kept as it is, and only a second
    // frame starts a buffer.
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Error::Transport)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let held = first.as_ref().map_or(0, Bytes::len) + buffer.len();
        if held + data.len() > MAX_RESPONSE_BYTES {
            return Err(Error::Decode(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        match first.take() {
            None if buffer.is_empty() => first = Some(data),
            None => buffer.extend_from_slice(&data),
            Some(earlier) => {
                buffer.reserve(earlier.len() + data.len());
                buffer.extend_from_slice(&earlier);
                buffer.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buffer.freeze()))
}

impl fmt::Debug for EvolutionInference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvolutionInference")
            .field("model", &self.inner.params.model)
            .field("chat_url", &self.inner.chat_url)
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn body_of(frames: &[&'static [u8]]) -> Body {
        let frames: Vec<_> = frames
            .iter()
            .map(|frame| Ok::<_, Infallible>(Frame::data(Bytes::from_static(frame))))
            .collect();
        StreamBody::new(stream::iter(frames))
            .map_err(|never| match never {})
            .boxed()
    }

    #[tokio::test]
    async fn a_body_is_read_whole_in_one_frame_or_many() {
        for frames in [
            &[][..],
            &[&b"{\"choices\":[]}"[..]][..],
            &[&b"{\"cho"[..], &b""[..], &b"ices\":"[..], &b"[]}"[..]][..],
            &[&b""[..], &b""[..], &b"{}"[..]][..],
        ] {
            let whole: Vec<u8> = frames.concat();
            let read = read_limited(body_of(frames)).await.unwrap();
            assert_eq!(read, whole, "{frames:?}");
        }
    }
}
