//! [`EmulatorBuilder`]: keys, models, token lifetime and faults to start with.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::emulator::Emulator;
use crate::fault::Fault;
use crate::models::{ModelKind, ModelSpec};
use crate::route::Route;

/// The key id of the demo key, used when no key is configured.
pub const DEMO_KEY_ID: &str = "demo-key-id";
/// The secret of the demo key.
pub const DEMO_SECRET: &str = "demo-secret";
/// The model served when no model is configured.
pub const DEMO_MODEL: &str = "demo-model";
/// An embedding model the real API serves (`ai-sage/Giga-Embeddings-instruct-3B`), for
/// [`EmulatorBuilder::embedding_model`]. Not served unless configured: the default model list is
/// [`DEMO_MODEL`] alone.
pub const DEMO_EMBEDDING_MODEL: &str = "ai-sage/Giga-Embeddings-instruct-3B";
/// Length of an embedding vector when the request does not ask for `dimensions`.
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 1024;
/// Lifetime of issued tokens unless configured: one hour, like Cloud.ru IAM.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Configures and starts an [`Emulator`]. Made by [`Emulator::builder`].
#[derive(Clone)]
pub struct EmulatorBuilder {
    pub(crate) keys: Vec<(String, String)>,
    pub(crate) api_keys: Vec<String>,
    pub(crate) models: Vec<ModelSpec>,
    pub(crate) ttl: Duration,
    pub(crate) port: u16,
    pub(crate) latency: Vec<(Route, Duration)>,
    pub(crate) key_latency: Vec<(String, Duration)>,
    pub(crate) key_faults: Vec<(String, Fault)>,
    pub(crate) disabled_keys: Vec<String>,
    pub(crate) faults: Vec<(Route, Fault)>,
    pub(crate) random: Option<(f64, u64, Vec<Route>)>,
    pub(crate) random_faults: Option<Vec<Fault>>,
    pub(crate) http2: bool,
    pub(crate) stream_interval: Duration,
    /// 0: one content piece per word.
    pub(crate) stream_chunks: usize,
    pub(crate) refuse_stream_options: bool,
}

impl fmt::Debug for EmulatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key_ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        let models: Vec<&str> = self.models.iter().map(|model| model.id.as_str()).collect();
        f.debug_struct("EmulatorBuilder")
            .field("key_ids", &key_ids)
            .field("api_keys", &self.api_keys.len())
            .field("models", &models)
            .field("ttl", &self.ttl)
            .field("port", &self.port)
            .field("latency", &self.latency)
            .field("key_latency", &self.key_latency)
            .field("key_faults", &self.key_faults)
            .field("disabled_keys", &self.disabled_keys)
            .field("faults", &self.faults)
            .field("random", &self.random)
            .field("http2", &self.http2)
            .field("stream_interval", &self.stream_interval)
            .field("stream_chunks", &self.stream_chunks)
            .field("refuse_stream_options", &self.refuse_stream_options)
            .finish_non_exhaustive()
    }
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            keys: Vec::new(),
            api_keys: Vec::new(),
            models: Vec::new(),
            ttl: DEFAULT_TTL,
            port: 0,
            latency: Vec::new(),
            key_latency: Vec::new(),
            key_faults: Vec::new(),
            disabled_keys: Vec::new(),
            faults: Vec::new(),
            random: None,
            random_faults: None,
            http2: false,
            stream_interval: Duration::ZERO,
            stream_chunks: 0,
            refuse_stream_options: false,
        }
    }
}

impl EmulatorBuilder {
    /// Accept this key id / secret pair at IAM. Repeatable; with none, the
    /// [`DEMO_KEY_ID`] / [`DEMO_SECRET`] pair is accepted.
    pub fn key(mut self, key_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.keys.push((key_id.into(), secret.into()));
        self
    }

    /// Accept this static Foundation Models API key as a bearer token on chat, models and
    /// embeddings, as Cloud.ru does: no IAM exchange, no expiry. Repeatable. Requests with it
    /// count in [`Stats::api_key_requests`](crate::Stats::api_key_requests), and per key in
    /// `chat_by_key` under the label a client names it by (`api-key-` and the first 8 hex
    /// digits of its SHA-256). [`Emulator::revoke_token`] of the key makes it answer 401.
    ///
    /// It does not replace the demo IAM key, which is accepted unless [`key`](Self::key) is
    /// called.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_keys.push(api_key.into());
        self
    }

    /// Serve this model id at `/v1/models`. Repeatable; defaults to [`DEMO_MODEL`].
    ///
    /// Without any configured model, chat requests may name any model. Once a model list is
    /// given (this or [`reasoning_model`](Self::reasoning_model)), a chat request for a model
    /// not on it answers 404 with code `model_not_found`, as OpenAI does.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.models.push(ModelSpec::new(model, ModelKind::Chat));
        self
    }

    /// Serve this model id as a reasoning model: like [`model`](Self::model), and its answers
    /// carry `message.reasoning_content`, its streams `delta.reasoning_content` pieces before
    /// the content, as a vLLM reasoning model's do. Its `/v1/models` entry has
    /// `metadata.reasoning: true`.
    pub fn reasoning_model(mut self, model: impl Into<String>) -> Self {
        self.models
            .push(ModelSpec::new(model, ModelKind::Reasoning));
        self
    }

    /// Serve this model id as an embedding model: like [`model`](Self::model) (it joins the
    /// model list, which then restricts what chat and embeddings requests may name), with
    /// `metadata.type: "embedder"` in its `/v1/models` entry.
    /// [`DEMO_EMBEDDING_MODEL`] is the id of one the real API serves.
    ///
    /// Without any configured model, `POST /v1/embeddings` answers any model name, as chat does.
    pub fn embedding_model(mut self, model: impl Into<String>) -> Self {
        self.models
            .push(ModelSpec::new(model, ModelKind::Embedding));
        self
    }

    /// Lifetime of issued tokens, measured on tokio's clock. Defaults to 3600 seconds.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Port to listen on, always on 127.0.0.1. Defaults to 0: any free port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Add `latency` to every chat and embeddings request made with key `key_id`'s tokens
    /// (or, for a static API key, its label), on top of the route's: one slow deployment
    /// among several, as [`Emulator::set_key_latency`] does. The key must be one
    /// [`key`](Self::key) or [`api_key`](Self::api_key) adds (or the demo key), or
    /// [`start`](Self::start) fails.
    pub fn key_latency(mut self, key_id: impl Into<String>, latency: Duration) -> Self {
        self.key_latency.push((key_id.into(), latency));
        self
    }

    /// Give every chat and embeddings request made with key `key_id`'s tokens (or, for a
    /// static API key, its label) this fault from the start, as [`Emulator::set_key_fault`]
    /// does: a deployment that throttles or fails until
    /// [`Emulator::clear_key_fault`]. Repeatable; a later fault for the same key replaces
    /// the earlier. The key must exist, as for [`key_latency`](Self::key_latency).
    ///
    /// ```
    /// use evolution_emulator::{Emulator, Fault};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let emu = Emulator::builder()
    ///     .key("healthy", "s1")
    ///     .key("throttled", "s2")
    ///     .key_fault("throttled", Fault::status(429).with_header("retry-after", "30"))
    ///     .start()
    ///     .await?;
    /// # emu.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn key_fault(mut self, key_id: impl Into<String>, fault: Fault) -> Self {
        self.key_faults.push((key_id.into(), fault));
        self
    }

    /// Start with key `key_id` disabled at IAM, as [`Emulator::disable_key`] does: IAM
    /// answers its exchanges 401 (code `key_disabled`) until
    /// [`Emulator::enable_key`]. Repeatable. The key must exist, as for
    /// [`key_latency`](Self::key_latency); a static API key is never exchanged at IAM, so
    /// disabling one changes nothing (revoke it with [`Emulator::revoke_token`]).
    pub fn disable_key(mut self, key_id: impl Into<String>) -> Self {
        self.disabled_keys.push(key_id.into());
        self
    }

    /// Latency added to every request of `route`. Defaults to none.
    pub fn latency(mut self, route: Route, latency: Duration) -> Self {
        self.latency.push((route, latency));
        self
    }

    /// Queue a fault from the start, as [`Emulator::push_fault`] does.
    pub fn fault(mut self, route: Route, fault: Fault) -> Self {
        self.faults.push((route, fault));
        self
    }

    /// Random faults from the start, as [`Emulator::set_fault_probability`] does.
    pub fn fault_probability(mut self, probability: f64, seed: u64, routes: &[Route]) -> Self {
        self.random = Some((probability, seed, routes.to_vec()));
        self
    }

    /// The set random faults are drawn from, as [`Emulator::set_random_faults`] does.
    pub fn random_faults(mut self, faults: Vec<Fault>) -> Self {
        self.random_faults = Some(faults);
        self
    }

    /// The gap between two events of a streamed (`stream: true`) chat answer, as
    /// [`Emulator::set_stream_interval`] sets it. Defaults to none: a stream's events leave
    /// together.
    ///
    /// With [`stream_chunks`](Self::stream_chunks), this makes streams that stay open a known
    /// time, for memory and drain tests: 30 chunks 1 second apart hold each stream about 32
    /// seconds (the role and finish events, then `[DONE]`, count as chunks too).
    pub fn stream_interval(mut self, interval: Duration) -> Self {
        self.stream_interval = interval;
        self
    }

    /// How many content pieces (`delta.content` events) each choice of a streamed chat answer
    /// has, as [`Emulator::set_stream_chunks`] sets it. Defaults to one piece per word.
    ///
    /// The pieces are cut at about even character counts and still concatenate to the answer's
    /// content; when it has fewer characters than `chunks`, some pieces are empty strings. A
    /// reasoning model's `reasoning_content` pieces stay one per word. 0 restores the default.
    pub fn stream_chunks(mut self, chunks: usize) -> Self {
        self.stream_chunks = chunks;
        self
    }

    /// Answer every chat request whose body has a `stream_options` member (whatever its
    /// value) 400, as older OpenAI-compatible servers (Azure OpenAI's older API versions) do,
    /// with exactly the body
    /// `{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error","param":"stream_options","code":null}}`.
    /// As [`Emulator::set_refuse_stream_options`] sets it. Defaults to false: `stream_options`
    /// is accepted and `include_usage: true` adds a usage event to a stream.
    ///
    /// The 400 counts like any chat answer (`chat_requests`, `chat_by_status`, `chat_by_key`);
    /// a bad token still answers 401 first, and a key's or a scripted fault replaces it.
    pub fn refuse_stream_options(mut self, refuse: bool) -> Self {
        self.refuse_stream_options = refuse;
        self
    }

    /// Also serve HTTP/2 in cleartext with prior knowledge (h2c) on the same port: a
    /// connection whose first bytes are HTTP/2's preface speaks HTTP/2, any other HTTP/1.1.
    /// Defaults to false (HTTP/1.1 only).
    ///
    /// For tests and benches of an HTTP/2 upstream, as the real API is over TLS with ALPN: a
    /// client such as reqwest with `http2_prior_knowledge()` multiplexes its requests over one
    /// connection. There is no limit on concurrent streams per connection. A
    /// [`Fault::close`] or [`Fault::cut_stream`] drops the whole connection, every stream on it
    /// included.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// Bind 127.0.0.1 and start serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// If the port cannot be bound, or (`InvalidInput`) a
    /// [`key_latency`](Self::key_latency), [`key_fault`](Self::key_fault) or
    /// [`disable_key`](Self::disable_key) names no configured key.
    pub async fn start(self) -> io::Result<Emulator> {
        Emulator::start(self).await
    }
}
