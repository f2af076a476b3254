//! Evolution as a [rig](https://docs.rs/rig-core) provider (the `rig` feature).
//!
//! rig's own OpenAI-compatible Chat Completions provider encodes the requests and
//! decodes the answers (tools, streaming, usage); every request it makes travels
//! through this crate's tower stack, so rig gets the IAM token, the 401 resend,
//! retries, the backup key and the metrics of [`EvolutionInference`] without knowing.
//!
//! ```no_run
//! use evolution_client::rig::Client;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::from_env()?; // the EVOLUTION_* variables, as EvolutionInference::from_env
//! let agent = client
//!     .agent("your-model")
//!     .preamble("Отвечай кратко.")
//!     .build();
//! let answer = agent.prompt("Привет!").await?;
//! println!("{}", answer.output());
//! println!("{} requests", client.inference().stats().total_requests);
//! # Ok(()) }
//! ```
//!
//! Streaming is rig's: `agent.prompt(..).stream()` yields text deltas as the
//! Server-Sent Events arrive (see `examples/rig_agent.rs`).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use http::{Request, Response};
use http_body_util::BodyDataStream;
use rig_agent::AgentBuilder;
use rig_core::driver::Model;
use rig_core::http_client::{self, HttpClientExt, LazyBody, MultipartForm, StreamingResponse};
use rig_core::providers::openai::wire::{Auth, BodyRewrite, Chat, Dialect, Quirks};
use rig_core::providers::openai::{OpenAI, OpenAIConfig};
use rig_core::wasm_compat::WasmCompatSend;

use crate::{
    Body, ENV_BASE_URL, ENV_KEY_ID, Error, EvolutionInference, EvolutionInferenceBuilder,
    MAX_RESPONSE_BYTES, Result,
};

pub use rig_agent;
pub use rig_core;

/// Cloud.ru Evolution as a rig OpenAI-compatible dialect: Chat Completions,
/// `Authorization` left to [`EvolutionInference`]'s stack, and text-only
/// content sent as plain strings.
///
/// rig sends a system message (and multi-part user text) as an array of
/// `{"type": "text"}` parts; the reference Evolution clients send strings, and so
/// does this dialect (the rewrite rig names for Perplexity, which does exactly that
/// and keeps image parts as they are).
pub const DIALECT: Dialect = {
    let mut quirks = Quirks::openai();
    quirks.auth = Auth::OptionalBearer;
    quirks.rewrite = BodyRewrite::Perplexity;
    let mut dialect = Dialect::gateway(
        "evolution",
        "https://foundation-models.api.cloud.ru/v1",
        ENV_KEY_ID,
    )
    .with_quirks(quirks);
    dialect.base_url_env = Some(ENV_BASE_URL);
    dialect
};

/// A rig provider client for Evolution: rig's OpenAI-compatible client on an
/// [`EvolutionInference`]'s stack.
///
/// `Clone` is cheap and shares the token cache, the connection pool and the statistics.
#[derive(Clone, Debug)]
pub struct Client {
    inference: EvolutionInference,
    http: HttpClient,
    openai: OpenAI,
}

impl Client {
    /// A client configured like [`EvolutionInference::from_env`]: the `EVOLUTION_*`
    /// variables and a `.env` file, the backup key included.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable to set.
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(EvolutionInferenceBuilder::from_env().build()?))
    }

    /// A client sending through `inference`'s stack, to its base URL only: the
    /// stack attaches the key's token, and it must not reach another host. The
    /// body read timeout follows `inference`'s `request_timeout`.
    pub fn new(inference: EvolutionInference) -> Self {
        let base = inference.base_url().to_owned();
        let http = HttpClient {
            inference: inference.clone(),
            prefix: format!("{base}/"),
            read_timeout: inference.request_timeout(),
        };
        let openai = OpenAIConfig::with_key(&DIALECT, "")
            .with_base_url(base)
            .connect(http.clone());
        Self {
            inference,
            http,
            openai,
        }
    }

    /// How long a response body may go without data (a stream between two chunks
    /// included) before it fails with [`Error::Timeout`]. Defaults to the client's
    /// `request_timeout`.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.http.read_timeout = timeout;
        self.openai = self.openai.with_http(self.http.clone());
        self
    }

    /// rig's completion model for `model` (Chat Completions), for
    /// `rig_core`'s `Model::call` / `Model::stream` or an agent of your own.
    pub fn completion_model(&self, model: impl Into<String>) -> Model<Chat> {
        self.openai.chat(model)
    }

    /// A rig agent builder on `model`: `.preamble(..)`, `.temperature(..)`, tools,
    /// then `.build()`.
    pub fn agent(&self, model: impl Into<String>) -> AgentBuilder {
        AgentBuilder::new(self.completion_model(model))
    }

    /// The Evolution client underneath: [`stats`](EvolutionInference::stats),
    /// [`token_manager`](EvolutionInference::token_manager),
    /// [`fallback`](EvolutionInference::fallback), and typed calls of its own.
    pub fn inference(&self) -> &EvolutionInference {
        &self.inference
    }

    /// rig's OpenAI-compatible client on this stack, for what [`Client`] does not
    /// wrap (`list_models`, other wires).
    pub fn openai(&self) -> &OpenAI {
        &self.openai
    }

    /// The rig transport: requests under the base URL, sent through the stack.
    pub fn http_client(&self) -> &HttpClient {
        &self.http
    }
}

/// An [`EvolutionInference`] stack as rig's HTTP transport ([`HttpClientExt`]).
///
/// Token, 401 resend, retries, fallback, metrics and timeouts apply to every
/// request; a non-success answer is handed to rig as it came, for rig's own error
/// types. Requests outside the base URL are refused, since they would carry the
/// key's token. Multipart requests (transcription) are not supported.
#[derive(Clone)]
pub struct HttpClient {
    // Its `send`: the whole stack, and the GenAI record and token usage of each call.
    inference: EvolutionInference,
    prefix: String,
    read_timeout: Duration,
}

impl HttpClient {
    /// Sends `request` and answers the response head, the body still streaming.
    fn open(
        &self,
        request: Request<Bytes>,
    ) -> impl Future<Output = http_client::Result<Response<Body>>> + Send + 'static {
        let outside = !request.uri().to_string().starts_with(&self.prefix);
        let refusal = outside.then(|| {
            Error::config(
                "base_url",
                format!(
                    "refusing to send the Evolution token to `{}{}`: it is not under the base URL `{}`",
                    request.uri().authority().map_or("", |a| a.as_str()),
                    request.uri().path(),
                    self.prefix.trim_end_matches('/'),
                ),
            )
        });
        let inference = self.inference.clone();
        async move {
            if let Some(refusal) = refusal {
                return Err(http_client::Error::instance(refusal));
            }
            inference
                .send(request)
                .await
                .map_err(http_client::Error::instance)
        }
    }
}

/// The body's data frames; an error, or `timeout` without data, ends it.
fn chunks(
    body: Body,
    timeout: Duration,
) -> impl futures_util::Stream<Item = http_client::Result<Bytes>> + Send + 'static {
    stream::unfold(Some(BodyDataStream::new(body)), move |frames| async move {
        let mut frames = frames?;
        let failure = match tokio::time::timeout(timeout, frames.next()).await {
            Ok(Some(Ok(data))) => return Some((Ok(data), Some(frames))),
            Ok(None) => return None,
            Ok(Some(Err(error))) => Error::Transport(error),
            Err(_) => Error::Timeout(timeout),
        };
        Some((Err(http_client::Error::instance(failure)), None))
    })
}

/// The whole body, at most [`MAX_RESPONSE_BYTES`].
async fn whole(body: Body, timeout: Duration) -> http_client::Result<Bytes> {
    let mut chunks = std::pin::pin!(chunks(body, timeout));
    let mut buffer = BytesMut::new();
    while let Some(data) = chunks.next().await {
        let data = data?;
        if buffer.len() + data.len() > MAX_RESPONSE_BYTES {
            return Err(http_client::Error::instance(Error::Decode(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            ))));
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

impl HttpClientExt for HttpClient {
    fn send<T, U>(
        &self,
        request: Request<T>,
    ) -> impl Future<Output = http_client::Result<Response<LazyBody<U>>>> + WasmCompatSend + 'static
    where
        T: Into<Bytes> + WasmCompatSend,
        U: From<Bytes> + WasmCompatSend + 'static,
    {
        let opened = self.open(request.map(Into::into));
        let timeout = self.read_timeout;
        async move {
            let response = opened.await?;
            Ok(response.map(|body| -> LazyBody<U> {
                Box::pin(async move { whole(body, timeout).await.map(U::from) })
            }))
        }
    }

    fn send_multipart<U>(
        &self,
        _request: Request<MultipartForm>,
    ) -> impl Future<Output = http_client::Result<Response<LazyBody<U>>>> + WasmCompatSend + 'static
    where
        U: From<Bytes> + WasmCompatSend + 'static,
    {
        std::future::ready(Err(http_client::Error::Instance(
            "multipart requests (transcription) are not supported by the Evolution transport"
                .into(),
        )))
    }

    fn send_streaming<T>(
        &self,
        request: Request<T>,
    ) -> impl Future<Output = http_client::Result<StreamingResponse>> + WasmCompatSend
    where
        T: Into<Bytes> + WasmCompatSend,
    {
        let opened = self.open(request.map(Into::into));
        let timeout = self.read_timeout;
        async move {
            let response = opened.await?;
            Ok(
                response
                    .map(|body| -> http_client::BoxedStream { Box::pin(chunks(body, timeout)) }),
            )
        }
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("base_url", &self.prefix.trim_end_matches('/'))
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl From<EvolutionInference> for Client {
    fn from(inference: EvolutionInference) -> Self {
        Self::new(inference)
    }
}
