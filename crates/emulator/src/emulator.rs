//! [`Emulator`]: the running server and the handle that steers it.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET, EmulatorBuilder};
use crate::conn::Protocol;
use crate::fault::Fault;
use crate::models::{ModelKind, ModelSpec};
use crate::route::Route;
use crate::server;
use crate::state::Shared;
use crate::stats::Stats;
use crate::sync::lock;

/// A running Evolution emulator: IAM, chat completions, embeddings and models on 127.0.0.1, with fault
/// injection and counters.
///
/// Cheap to clone; every clone steers the same server. The server stops gracefully on
/// [`shutdown`](Self::shutdown), or when the last clone is dropped.
///
/// # Example
///
/// ```
/// use evolution_emulator::{Emulator, Fault, Route};
/// use serde_json::{Value, json};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emu = Emulator::builder().key("k1", "s1").start().await?;
/// let http = reqwest::Client::new();
///
/// let token: Value = http
///     .post(emu.auth_url())
///     .json(&json!({ "keyId": "k1", "secret": "s1" }))
///     .send()
///     .await?
///     .json()
///     .await?;
/// let token = token["access_token"].as_str().unwrap();
///
/// emu.push_fault(Route::Chat, Fault::status(503).with_header("retry-after", "1"));
/// let chat = |content: &str| {
///     http.post(format!("{}/chat/completions", emu.base_url()))
///         .bearer_auth(token)
///         .json(&json!({ "model": "demo-model", "messages": [{ "role": "user", "content": content }] }))
///         .send()
/// };
/// assert_eq!(chat("hello").await?.status(), 503);
///
/// let answer: Value = chat("hello").await?.json().await?;
/// assert_eq!(answer["choices"][0]["message"]["content"], "[k1] echo: hello");
/// assert_eq!(emu.stats().chat_status(503), 1);
/// emu.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// Dropping it (with the last handle) also stops the server.
    shutdown: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.inner.addr)
            .field("models", &self.inner.shared.model_ids())
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Start configuring an emulator.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    pub(crate) async fn start(config: EmulatorBuilder) -> io::Result<Emulator> {
        // Only a model list given by the user restricts what chat requests may name.
        let (models, restricted) = if config.models.is_empty() {
            (vec![ModelSpec::new(DEMO_MODEL, ModelKind::Chat)], false)
        } else {
            (config.models, true)
        };
        let shared = Arc::new(Shared::new(models, restricted, config.ttl));
        if config.keys.is_empty() {
            shared.keys.add(DEMO_KEY_ID, DEMO_SECRET);
        }
        for (id, secret) in &config.keys {
            shared.keys.add(id, secret);
        }
        for api_key in &config.api_keys {
            shared.add_api_key(api_key);
        }
        for (route, latency) in config.latency {
            shared.set_latency(route, latency);
        }
        let known = |key_id: &str, found: bool| {
            if found {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no such key: {key_id}"),
                ))
            }
        };
        for (key_id, latency) in &config.key_latency {
            known(key_id, shared.keys.set_latency(key_id, *latency))?;
        }
        for (key_id, fault) in config.key_faults {
            known(&key_id, shared.keys.set_fault(&key_id, Some(fault)))?;
        }
        for key_id in &config.disabled_keys {
            known(key_id, shared.keys.set_disabled(key_id, true))?;
        }
        shared.set_stream_interval(config.stream_interval);
        shared.set_stream_chunks(config.stream_chunks);
        shared.set_refuse_stream_options(config.refuse_stream_options);
        for (route, fault) in config.faults {
            shared.faults.push(route, fault);
        }
        if let Some(faults) = config.random_faults {
            shared.faults.set_random_faults(faults);
        }
        if let Some((probability, seed, routes)) = config.random {
            shared.faults.set_probability(probability, seed, &routes);
        }

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let router = server::router(shared.clone());
        let protocol = if config.http2 {
            Protocol::Auto
        } else {
            Protocol::Http1
        };
        let server = tokio::spawn(server::serve(listener, router, stop, protocol));
        tracing::debug!(%addr, "evolution emulator started");
        Ok(Emulator {
            inner: Arc::new(Inner {
                shared,
                addr,
                shutdown,
                server: Mutex::new(Some(server)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The address the server listens on (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT`, the root of every route.
    pub fn origin(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The inference base URL, `http://127.0.0.1:PORT/v1`.
    ///
    /// Always an IP literal, so clients never resolve a name (no DNS, no `spawn_blocking`, which
    /// matters under paused time).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.origin())
    }

    /// The IAM token URL, `http://127.0.0.1:PORT/api/v1/auth/token`.
    pub fn auth_url(&self) -> String {
        format!("{}/api/v1/auth/token", self.origin())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }

    /// Zero the counters (requests in flight stay in the in-flight gauges).
    pub fn reset_stats(&self) {
        self.shared().reset_stats();
    }

    /// Queue `fault` for `route`: the next request to that route without an earlier queued fault
    /// gets it.
    pub fn push_fault(&self, route: Route, fault: Fault) {
        self.shared().faults.push(route, fault);
    }

    /// Drop the faults still queued for `route`.
    pub fn clear_faults(&self, route: Route) {
        self.shared().faults.clear(route);
    }

    /// How many faults are still queued for `route`.
    pub fn pending_faults(&self, route: Route) -> usize {
        self.shared().faults.pending(route)
    }

    /// Add this latency to every request of `route` (zero removes it).
    pub fn set_latency(&self, route: Route, latency: Duration) {
        self.shared().set_latency(route, latency);
    }

    /// The gap between two events of a streamed chat answer, for streams answered from now on
    /// (zero: none). See [`EmulatorBuilder::stream_interval`].
    pub fn set_stream_interval(&self, interval: Duration) {
        self.shared().set_stream_interval(interval);
    }

    /// Content pieces per choice of streamed chat answers from now on (0: one per word). See
    /// [`EmulatorBuilder::stream_chunks`].
    pub fn set_stream_chunks(&self, chunks: usize) {
        self.shared().set_stream_chunks(chunks);
    }

    /// Whether chat requests naming `stream_options` answer 400 from now on, as an older
    /// OpenAI-compatible server does. See [`EmulatorBuilder::refuse_stream_options`].
    pub fn set_refuse_stream_options(&self, refuse: bool) {
        self.shared().set_refuse_stream_options(refuse);
    }

    /// Lifetime of tokens issued from now on; tokens already issued keep theirs.
    pub fn set_ttl(&self, ttl: Duration) {
        self.shared().set_ttl(ttl);
    }

    /// The lifetime given to new tokens.
    pub fn ttl(&self) -> Duration {
        self.shared().ttl()
    }

    /// Revoke one token: requests with it answer 401. False if it was never issued.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.shared().tokens.revoke(token)
    }

    /// Revoke every token issued so far for `key_id`; returns how many were live. The key can
    /// still get new tokens (see [`disable_key`](Self::disable_key) for that).
    pub fn revoke_key(&self, key_id: &str) -> usize {
        self.shared().tokens.revoke_key(key_id)
    }

    /// Add `latency` to every chat and embeddings request made with key `key_id`'s tokens
    /// (zero removes it): one slow deployment among several. False if there is no such key.
    pub fn set_key_latency(&self, key_id: &str, latency: Duration) -> bool {
        self.shared().keys.set_latency(key_id, latency)
    }

    /// Give every chat and embeddings request made with key `key_id`'s tokens (or, for a
    /// static API key, its label) this fault, until [`clear_key_fault`](Self::clear_key_fault):
    /// one deployment that throttles (`Fault::status(429).with_header("retry-after", "30")`),
    /// fails (`Fault::status(503)`), hangs (`Fault::delay(..)` longer than the client's
    /// timeout) or drops connections (`Fault::close()`). Replaces the key's previous fault.
    /// False if there is no such key.
    ///
    /// The fault applies to requests with a live token, after the key's and the route's
    /// latency; an expired or revoked token still answers 401. It takes the place of the
    /// route's scripted and random faults, which are left for other requests. Each request
    /// it answers counts in [`Stats::faults_injected`] and by its status, like any fault.
    /// IAM is not affected: see [`disable_key`](Self::disable_key) for that.
    pub fn set_key_fault(&self, key_id: &str, fault: Fault) -> bool {
        self.shared().keys.set_fault(key_id, Some(fault))
    }

    /// Stop the fault [`set_key_fault`](Self::set_key_fault) gave the key: its requests are
    /// answered normally again. False if there is no such key (clearing a key without a
    /// fault is a no-op, true).
    pub fn clear_key_fault(&self, key_id: &str) -> bool {
        self.shared().keys.set_fault(key_id, None)
    }

    /// Make IAM refuse the key with 401 (code `key_disabled`); its exchange attempts still
    /// count in [`Stats::iam_requests_by_key`]. Tokens already issued keep working until they expire
    /// (revoke them with [`revoke_key`](Self::revoke_key)). False if there is no such key.
    pub fn disable_key(&self, key_id: &str) -> bool {
        self.shared().keys.set_disabled(key_id, true)
    }

    /// Make IAM accept a disabled key again. False if there is no such key.
    pub fn enable_key(&self, key_id: &str) -> bool {
        self.shared().keys.set_disabled(key_id, false)
    }

    /// Accept a new key at IAM, or give an existing key a new secret.
    pub fn add_key(&self, key_id: &str, secret: &str) {
        self.shared().keys.add(key_id, secret);
    }

    /// Accept a static API key as a bearer token, as
    /// [`EmulatorBuilder::api_key`](crate::EmulatorBuilder::api_key) does; a revoked one is
    /// accepted again.
    pub fn add_api_key(&self, api_key: &str) {
        self.shared().add_api_key(api_key);
    }

    /// Inject random faults: each request to one of `routes` gets one, with this probability,
    /// drawn from a generator seeded with `seed` (the same seed and request order give the same
    /// faults). Replaces the previous setting; probability 0 stops random faults. Scripted faults
    /// come first.
    ///
    /// The faults are drawn from 500, 502, 503, 429 and a dropped connection unless
    /// [`set_random_faults`](Self::set_random_faults) chose others.
    pub fn set_fault_probability(&self, probability: f64, seed: u64, routes: &[Route]) {
        self.shared()
            .faults
            .set_probability(probability, seed, routes);
    }

    /// The set random faults are drawn from, uniformly.
    pub fn set_random_faults(&self, faults: Vec<Fault>) {
        self.shared().faults.set_random_faults(faults);
    }

    /// The JSON body of the last chat completion request received (whatever its
    /// outcome), so a test can check exactly what a client sent. `None` before the
    /// first request, or if that body was not JSON.
    pub fn last_chat_request(&self) -> Option<serde_json::Value> {
        self.last_request(Route::Chat)
    }

    /// The JSON body of the last embeddings request received, as
    /// [`last_chat_request`](Self::last_chat_request) for chat.
    pub fn last_embeddings_request(&self) -> Option<serde_json::Value> {
        self.last_request(Route::Embeddings)
    }

    fn last_request(&self, route: Route) -> Option<serde_json::Value> {
        let body = self.shared().last_body(route)?;
        serde_json::from_slice(&body).ok()
    }

    /// Every token issued so far, oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared().tokens.issued()
    }

    /// Stop accepting connections, let requests in flight finish (at most 5 seconds), and wait
    /// for the server to stop. Later calls return at once; other clones see the server gone.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let server = lock(&self.inner.server).take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }
}
