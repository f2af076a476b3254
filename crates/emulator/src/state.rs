//! The state shared by the server and every [`Emulator`](crate::Emulator) handle.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::injector::Injector;
use crate::keys::KeyRing;
use crate::models::ModelSpec;
use crate::route::Route;
use crate::stats::{Counters, Stats};
use crate::sync::lock;
use crate::tokens::TokenStore;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) keys: KeyRing,
    pub(crate) tokens: TokenStore,
    pub(crate) faults: Injector,
    pub(crate) counters: Counters,
    pub(crate) models: Vec<ModelSpec>,
    /// Whether the model list was configured, so that chat requests for other models
    /// answer 404.
    pub(crate) restricted: bool,
    /// The `GET /v1/models` answer, built once.
    pub(crate) models_body: Bytes,
    ttl_nanos: AtomicU64,
    latency_nanos: [AtomicU64; Route::COUNT],
    /// The gap between two events of a streamed answer.
    stream_interval_nanos: AtomicU64,
    /// Content pieces per streamed answer; 0 for one piece per word.
    stream_chunks: AtomicUsize,
    /// Whether chat requests naming `stream_options` answer 400.
    refuse_stream_options: AtomicBool,
    completions: AtomicU64,
    /// The body of the last request per route, for tests that check what a client sent.
    last_bodies: [std::sync::Mutex<Option<Bytes>>; Route::COUNT],
}

impl Shared {
    pub(crate) fn new(models: Vec<ModelSpec>, restricted: bool, ttl: Duration) -> Self {
        let models_body = crate::models::list_body(&models);
        Shared {
            keys: KeyRing::default(),
            tokens: TokenStore::new(),
            faults: Injector::new(),
            counters: Counters::new(),
            models,
            restricted,
            models_body,
            ttl_nanos: AtomicU64::new(nanos(ttl)),
            latency_nanos: Default::default(),
            stream_interval_nanos: AtomicU64::new(0),
            stream_chunks: AtomicUsize::new(0),
            refuse_stream_options: AtomicBool::new(false),
            completions: AtomicU64::new(0),
            last_bodies: Default::default(),
        }
    }

    /// The served model ids, in order.
    pub(crate) fn model_ids(&self) -> Vec<&str> {
        self.models.iter().map(|model| model.id.as_str()).collect()
    }

    /// The served model named `id`: `Err(())` if a model list was configured and `id` is not
    /// on it; `Ok(None)` for any id when no list was configured (a plain model then).
    pub(crate) fn model(&self, id: &str) -> Result<Option<&ModelSpec>, ()> {
        match self.models.iter().find(|model| model.id == id) {
            Some(model) => Ok(Some(model)),
            None if self.restricted => Err(()),
            None => Ok(None),
        }
    }

    pub(crate) fn record_body(&self, route: Route, body: &Bytes) {
        *lock(&self.last_bodies[route.index()]) = Some(body.clone());
    }

    pub(crate) fn last_body(&self, route: Route) -> Option<Bytes> {
        lock(&self.last_bodies[route.index()]).clone()
    }

    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_nanos(self.ttl_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn set_ttl(&self, ttl: Duration) {
        self.ttl_nanos.store(nanos(ttl), Ordering::Relaxed);
    }

    pub(crate) fn latency(&self, route: Route) -> Duration {
        Duration::from_nanos(self.latency_nanos[route.index()].load(Ordering::Relaxed))
    }

    pub(crate) fn set_latency(&self, route: Route, latency: Duration) {
        self.latency_nanos[route.index()].store(nanos(latency), Ordering::Relaxed);
    }

    pub(crate) fn stream_interval(&self) -> Duration {
        Duration::from_nanos(self.stream_interval_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn set_stream_interval(&self, interval: Duration) {
        self.stream_interval_nanos
            .store(nanos(interval), Ordering::Relaxed);
    }

    /// How many content pieces a streamed answer has: `None` for one per word.
    pub(crate) fn stream_chunks(&self) -> Option<usize> {
        match self.stream_chunks.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// 0 restores one piece per word.
    pub(crate) fn set_stream_chunks(&self, chunks: usize) {
        self.stream_chunks.store(chunks, Ordering::Relaxed);
    }

    pub(crate) fn refuse_stream_options(&self) -> bool {
        self.refuse_stream_options.load(Ordering::Relaxed)
    }

    pub(crate) fn set_refuse_stream_options(&self, refuse: bool) {
        self.refuse_stream_options.store(refuse, Ordering::Relaxed);
    }

    /// The next `chatcmpl-<n>` number, starting at 1.
    pub(crate) fn next_completion(&self) -> u64 {
        self.completions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Accept a static API key as a bearer token (again, if it was revoked).
    pub(crate) fn add_api_key(&self, api_key: &str) {
        let key = self.keys.add_api_key(api_key);
        self.tokens.add_static(api_key, key);
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot(&self.keys.all())
    }

    pub(crate) fn reset_stats(&self) {
        self.counters.reset(&self.keys.all());
    }
}

/// Durations are stored as whole nanoseconds; about 584 years fit, longer saturates.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
