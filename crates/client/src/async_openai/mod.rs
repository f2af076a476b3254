//! [async-openai](https://docs.rs/async-openai)'s typed client on Evolution (the
//! `async-openai` feature).
//!
//! async-openai (0.43) sends every request through one tower service,
//! `Service<HttpRequestFactory, Response = reqwest::Response>`, installed with
//! `Client::with_http_service`. [`HttpService`] is that service on an
//! [`EvolutionInference`]: each request goes through
//! [`EvolutionInference::send`], the whole stack (IAM token, 401 resend, retries,
//! backup key or pool, metrics and GenAI usage), and comes back as a
//! `reqwest::Response` whose body is still streaming. async-openai keeps its typed API:
//! chat, tools, structured outputs, embeddings, streaming.
//!
//! ```no_run
//! use async_openai::types::chat::{
//!     ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
//! };
//! use evolution_client::EvolutionInference;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let llm = EvolutionInference::from_env()?;
//! let openai = evolution_client::async_openai::client(&llm);
//! let request = CreateChatCompletionRequestArgs::default()
//!     .model("your-model")
//!     .messages([ChatCompletionRequestUserMessage::from("Привет!").into()])
//!     .build()?;
//! let answer = openai.chat().create(request).await?;
//! println!("{:?}", answer.choices[0].message.content);
//! println!("{} requests", llm.stats().total_requests);
//! # Ok(()) }
//! ```
//!
//! # One retry layer, not two
//!
//! Our stack retries (with a shared budget, `Retry-After` and a deadline), resends after a
//! 401 and switches keys. async-openai's own `OpenAIRetryLayer` (its default client's
//! retry) on top would multiply the attempts: 4 of its tries × 3 of ours is 12 requests
//! for one call, and its backoff would ignore our budget. So:
//!
//! - [`client`] installs [`HttpService`] alone: the client it returns has no retry of
//!   async-openai's (`with_http_service` replaces the default executor, its retry with it);
//! - [`HttpService`]'s error is [`ServiceError`], not `OpenAIError`, and async-openai's
//!   retry (`OpenAIRetry`, `SimpleRetryPolicy`) only wraps services failing with
//!   `OpenAIError`: stacking it does not compile.
//!
//! ```compile_fail,E0277
//! use async_openai::middleware::retry::OpenAIRetryLayer;
//! use async_openai::{Client, config::OpenAIConfig};
//! use evolution_client::async_openai::HttpService;
//!
//! # fn stack(llm: evolution_client::EvolutionInference) {
//! let retried = tower::ServiceBuilder::new()
//!     .layer(OpenAIRetryLayer::default())
//!     .service(HttpService::new(&llm));
//! // error: `OpenAIRetry<HttpService>` is not a `Service<HttpRequestFactory>`
//! let _ = Client::with_config(OpenAIConfig::new()).with_http_service(retried);
//! # }
//! ```
//!
//! Calling `with_http_client(..)` on the returned client would replace the stack with a
//! plain reqwest client (and async-openai's retry): don't.
//!
//! # What to know
//!
//! - The config's API key is ignored: the `Authorization` header async-openai sets is
//!   removed, and the stack sets the key's bearer token. Requests must go under the
//!   client's [`base_url`](EvolutionInference::base_url) (as [`client`] configures); any
//!   other URL is refused ([`Error::Config`]), since it would carry the token.
//! - Multipart requests (audio, files) are built once, read into memory (the stack sends
//!   `Bytes`) and sent once: they carry [`NoRetry`](crate::retry::NoRetry), so the retry
//!   layer hands back whatever the first answer is (a 503, say). Only the resends where
//!   the server refused the request without processing it still apply: once after a 401
//!   with a fresh token, and to another key (the backup key, another deployment) when a key
//!   is refused. The form itself is never rebuilt.
//! - The stack's timeouts apply until the response head; then a body silent for longer
//!   than [`HttpService::read_timeout`] (the client's `request_timeout`) fails with
//!   [`Error::Timeout`], which async-openai reports as a stream error. The client's
//!   `stream_*_timeout` settings belong to its own [`stream`](EvolutionInference::stream).
//! - async-openai stops reading a stream at `data: [DONE]`, one read short of the body's
//!   end: that event is handed over once the body has ended, so that the call counts as
//!   `ok`, not `cancelled`, and the connection is reused.
//! - async-openai sends only the parameters you set; [`EvolutionInference`]'s defaults
//!   (512 tokens, ...) do not apply.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ::async_openai::Client;
use ::async_openai::config::OpenAIConfig;
use ::async_openai::error::OpenAIError;
use ::async_openai::middleware::HttpRequestFactory;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http_body_util::BodyExt;
use reqwest::ResponseBuilderExt;
use tower::Service;

use crate::{Error, EvolutionInference, EvolutionInferenceBuilder, Result};

mod body;

/// async-openai's client on `inference`'s stack, sending to its base URL, with no retry of
/// async-openai's own (see the [module docs](self)).
///
/// `inference` is cloned (one reference count): its [`stats`](EvolutionInference::stats)
/// count this client's calls.
pub fn client(inference: &EvolutionInference) -> Client<OpenAIConfig> {
    Client::with_config(config(inference)).with_http_service(HttpService::new(inference))
}

/// [`client`] on an [`EvolutionInference::from_env`]: the `EVOLUTION_*` variables and a
/// `.env` file, the backup key included. To read its [`stats`](EvolutionInference::stats),
/// build the `EvolutionInference` yourself and call [`client`].
///
/// # Errors
///
/// [`Error::Config`] naming the variable to set.
pub fn client_from_env() -> Result<Client<OpenAIConfig>> {
    Ok(client(&EvolutionInferenceBuilder::from_env().build()?))
}

/// The async-openai configuration [`client`] uses: `inference`'s base URL, no API key
/// (the stack sets the token), and no OpenAI organization or project headers, whatever
/// the `OPENAI_*` variables say.
pub fn config(inference: &EvolutionInference) -> OpenAIConfig {
    OpenAIConfig::new()
        .with_api_base(inference.base_url())
        .with_api_key("")
        .with_org_id("")
        .with_project_id("")
}

/// An [`EvolutionInference`] as async-openai's HTTP service: each `HttpRequestFactory` is
/// built once and sent with [`EvolutionInference::send`]; the answer comes back as a
/// `reqwest::Response`, any status, its body streaming.
///
/// `Clone` costs two reference counts; always ready.
#[derive(Clone)]
pub struct HttpService {
    inference: EvolutionInference,
    /// `{base_url}/`: only URLs under it are sent.
    prefix: Arc<str>,
    read_timeout: Duration,
}

impl HttpService {
    /// The service sending through `inference`'s stack.
    pub fn new(inference: &EvolutionInference) -> Self {
        Self {
            inference: inference.clone(),
            prefix: Arc::from(format!("{}/", inference.base_url())),
            read_timeout: inference.request_timeout(),
        }
    }

    /// How long a response body may go without data (a stream between two chunks
    /// included) before it fails with [`Error::Timeout`]. Defaults to the client's
    /// `request_timeout`.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The Evolution client underneath.
    pub fn inference(&self) -> &EvolutionInference {
        &self.inference
    }
}

impl fmt::Debug for HttpService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpService")
            .field("base_url", &self.inference.base_url())
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

/// Why [`HttpService`] failed. async-openai receives it as an `OpenAIError`: a
/// [`Build`](Self::Build) error as it was, an [`Evolution`](Self::Evolution) one as
/// `OpenAIError::Boxed`, which downcasts to [`Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// async-openai could not build the request, or read its body.
    #[error("async-openai could not build the request")]
    Build(#[source] OpenAIError),
    /// The stack failed before a response head (or refused the URL).
    #[error(transparent)]
    Evolution(#[from] Error),
}

impl From<ServiceError> for OpenAIError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Build(error) => error,
            ServiceError::Evolution(error) => OpenAIError::Boxed(Box::new(error)),
        }
    }
}

// async-openai boxes the future it gets from the service anyway (and so does the factory's
// `build`): a hand-written future would save nothing.
type Pending = Pin<Box<dyn Future<Output = Result<reqwest::Response, ServiceError>> + Send>>;

impl Service<HttpRequestFactory> for HttpService {
    type Response = reqwest::Response;
    type Error = ServiceError;
    type Future = Pending;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ServiceError>> {
        // The stack drives its own readiness per call (`send`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Pending {
        let service = self.clone();
        Box::pin(async move { service.send(factory).await })
    }
}

impl HttpService {
    async fn send(self, factory: HttpRequestFactory) -> Result<reqwest::Response, ServiceError> {
        let request = factory.build().await.map_err(ServiceError::Build)?;
        let url = request.url().clone();
        if !url.as_str().starts_with(&*self.prefix) {
            return Err(Error::config(
                "base_url",
                format!(
                    "refusing to send the Evolution token to `{}{}`: it is not under the base URL `{}`",
                    url.host_str().unwrap_or(""),
                    url.path(),
                    self.prefix.trim_end_matches('/'),
                ),
            )
            .into());
        }
        let request = http::Request::try_from(request)
            .map_err(|error| ServiceError::Build(OpenAIError::Reqwest(error)))?;
        let (mut head, body) = request.into_parts();
        // A JSON body is one `Bytes` frame, taken without a copy; a multipart form is read
        // into memory here, once, so that the stack can resend it.
        let body = body
            .collect()
            .await
            .map_err(|error| ServiceError::Build(OpenAIError::Reqwest(error)))?
            .to_bytes();
        head.headers.remove(AUTHORIZATION);
        let multipart = head
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("multipart/"));
        if multipart {
            // A form is sent once: see the module docs.
            head.extensions.insert(crate::retry::NoRetry);
        }
        let response = self
            .inference
            .send(http::Request::from_parts(head, body))
            .await?;
        let (mut head, body) = response.into_parts();
        // `reqwest::Response::url()` answers the URL sent to, as reqwest's own would.
        if let Ok(marker) = http::Response::builder().url(url).body(()) {
            head.extensions.extend(marker.into_parts().0.extensions);
        }
        let events = head.status.is_success()
            && head
                .headers
                .get(CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("text/event-stream"));
        let body = reqwest::Body::wrap(body::ReadBody::new(body, self.read_timeout, events));
        Ok(reqwest::Response::from(http::Response::from_parts(
            head, body,
        )))
    }
}

impl From<&EvolutionInference> for HttpService {
    fn from(inference: &EvolutionInference) -> Self {
        Self::new(inference)
    }
}
