//! Request counters: atomics on the hot path, a [`Stats`] snapshot for tests and `/_emulator/stats`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::keys::Key;
use crate::route::Route;
use crate::sync::lock;

/// A snapshot of the emulator's counters, from [`Emulator::stats`](crate::Emulator::stats) or
/// `GET /_emulator/stats` (the same fields as JSON).
///
/// Counts cover every request that reached a route, faulted or not. Status maps count the status
/// of the answer sent; a dropped connection ([`Fault::close`](crate::Fault::close)) sends none and
/// is counted in `connections_dropped` instead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// IAM token requests received.
    pub iam_requests: u64,
    /// IAM token requests by the `keyId` sent, known or not (bodies without one are not counted).
    pub iam_requests_by_key: BTreeMap<String, u64>,
    /// IAM answers by HTTP status.
    pub iam_by_status: BTreeMap<u16, u64>,
    /// Most IAM requests being handled at once (added latency and fault delays included).
    pub iam_in_flight_max: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// Requests (chat, models, embeddings) accepted with a static API key as the bearer.
    pub api_key_requests: u64,
    /// Chat completion requests received.
    pub chat_requests: u64,
    /// Chat answers by HTTP status.
    pub chat_by_status: BTreeMap<u16, u64>,
    /// Chat requests by the key their bearer token belongs to (a key id, or a static API
    /// key's label), whatever the answer: a fault, a 400, or a 401 for an expired or revoked
    /// token all count. Requests with a missing or unknown token name no key and are not
    /// counted here.
    pub chat_by_key: BTreeMap<String, u64>,
    /// Chat requests answered as a stream (`stream: true`).
    pub chat_streams: u64,
    /// Streamed answers being sent now: from the head until the last event is written, the
    /// client goes away or the connection is dropped. A proxy that drops its upstream
    /// request when its own client disconnects brings this back to 0.
    pub chat_streams_open: u64,
    /// Most streamed answers being sent at once.
    pub chat_streams_open_max: u64,
    /// Most chat requests being handled at once (until the answer's head is ready).
    pub chat_in_flight_max: u64,
    /// Model list requests received.
    pub models_requests: u64,
    /// Model list answers by HTTP status.
    pub models_by_status: BTreeMap<u16, u64>,
    /// Embeddings requests received.
    pub embeddings_requests: u64,
    /// Embeddings answers by HTTP status.
    pub embeddings_by_status: BTreeMap<u16, u64>,
    /// Embeddings requests by the key their bearer token belongs to, counted as
    /// `chat_by_key`.
    #[serde(default)]
    pub embeddings_by_key: BTreeMap<String, u64>,
    /// Inputs embedded: the `data` entries of successful embeddings answers.
    pub embeddings_inputs: u64,
    /// Most embeddings requests being handled at once (until the answer's head is ready).
    pub embeddings_in_flight_max: u64,
    /// Faults injected: scripted, random, or a key's
    /// ([`Emulator::set_key_fault`](crate::Emulator::set_key_fault)), one per request.
    pub faults_injected: u64,
    /// Connections dropped on purpose (close and cut-stream faults).
    pub connections_dropped: u64,
    /// The sum of `usage.prompt_tokens` over the answers that reported usage: successful
    /// non-streamed chat and embeddings answers, and the usage event of streamed chat answers
    /// (`stream_options.include_usage: true`).
    ///
    /// An answer counts when its usage is handed to the connection: a non-streamed answer
    /// once its full body is (a [cut](crate::Fault::cut_stream) one never), a stream's usage
    /// event when that event is, so a stream cut or failed by a fault before it, or one its
    /// client left, does not count. A [patched](crate::Fault::patch_body) answer counts the
    /// usage it sends. Bodies a fault supplies whole ([`raw_body`](crate::Fault::raw_body),
    /// [`iam_body`](crate::Fault::iam_body), [`malformed`](crate::Fault::malformed)) and
    /// error answers do not count.
    #[serde(default)]
    pub reported_input_tokens: u64,
    /// The sum of `usage.completion_tokens` over the same answers as
    /// [`reported_input_tokens`](Self::reported_input_tokens) (embeddings answers report none).
    #[serde(default)]
    pub reported_output_tokens: u64,
}

impl Stats {
    /// IAM requests that sent this `keyId`.
    pub fn iam_requests_for(&self, key_id: &str) -> u64 {
        self.iam_requests_by_key.get(key_id).copied().unwrap_or(0)
    }

    /// Chat requests made with a token of this key (see `chat_by_key`).
    pub fn chat_requests_for(&self, key_id: &str) -> u64 {
        self.chat_by_key.get(key_id).copied().unwrap_or(0)
    }

    /// Embeddings requests made with a token of this key (see `embeddings_by_key`).
    pub fn embeddings_requests_for(&self, key_id: &str) -> u64 {
        self.embeddings_by_key.get(key_id).copied().unwrap_or(0)
    }

    /// Inference requests (chat and embeddings) made with a token of this key, whatever
    /// their answer: what one deployment of a pool received.
    pub fn api_requests_for(&self, key_id: &str) -> u64 {
        self.chat_requests_for(key_id) + self.embeddings_requests_for(key_id)
    }

    /// Chat answers with this status.
    pub fn chat_status(&self, status: u16) -> u64 {
        self.chat_by_status.get(&status).copied().unwrap_or(0)
    }

    /// Embeddings answers with this status.
    pub fn embeddings_status(&self, status: u16) -> u64 {
        self.embeddings_by_status.get(&status).copied().unwrap_or(0)
    }

    /// IAM answers with this status.
    pub fn iam_status(&self, status: u16) -> u64 {
        self.iam_by_status.get(&status).copied().unwrap_or(0)
    }
}

/// Status codes are counted in a flat array; valid HTTP statuses are 100..=999.
const STATUS_SLOTS: usize = 1000;

/// Counters of one route.
#[derive(Debug)]
pub(crate) struct RouteCounters {
    requests: AtomicU64,
    by_status: Box<[AtomicU64]>,
    in_flight: AtomicU64,
    in_flight_max: AtomicU64,
}

impl RouteCounters {
    fn new() -> Self {
        RouteCounters {
            requests: AtomicU64::new(0),
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            in_flight: AtomicU64::new(0),
            in_flight_max: AtomicU64::new(0),
        }
    }

    /// Count a request and hold it in the in-flight gauge until the guard drops.
    pub(crate) fn enter(&self) -> InFlight<'_> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.in_flight_max.fetch_max(now, Ordering::AcqRel);
        InFlight { counters: self }
    }

    pub(crate) fn status(&self, status: u16) {
        if let Some(slot) = self.by_status.get(usize::from(status)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn statuses(&self) -> BTreeMap<u16, u64> {
        (0u16..)
            .zip(self.by_status.iter())
            .filter_map(|(status, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then_some((status, n))
            })
            .collect()
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        for slot in self.by_status.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        // Requests still in flight stay counted in the gauge; the maximum restarts from them.
        let now = self.in_flight.load(Ordering::Acquire);
        self.in_flight_max.store(now, Ordering::Release);
    }
}

/// Decrements the in-flight gauge on drop, also when the request is cancelled or its connection
/// dropped.
#[derive(Debug)]
pub(crate) struct InFlight<'a> {
    counters: &'a RouteCounters,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The streamed answers being sent, and the most at once. Each stream's body holds an
/// [`OpenStream`], so the gauge is shared (`Arc`) rather than borrowed.
#[derive(Debug, Default)]
pub(crate) struct StreamGauge {
    open: AtomicU64,
    max: AtomicU64,
}

impl StreamGauge {
    pub(crate) fn open(self: &Arc<Self>) -> OpenStream {
        let now = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.max.fetch_max(now, Ordering::AcqRel);
        OpenStream(self.clone())
    }
}

/// One open stream in the [`StreamGauge`], until dropped with the stream's body.
#[derive(Debug)]
pub(crate) struct OpenStream(Arc<StreamGauge>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The token usage of one answer: its `usage.prompt_tokens` and `usage.completion_tokens`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReportedUsage {
    pub(crate) input: u64,
    pub(crate) output: u64,
}

impl ReportedUsage {
    /// The usage a JSON answer reports in its `usage` object (a missing count is 0).
    pub(crate) fn of(answer: &serde_json::Map<String, serde_json::Value>) -> Self {
        let count = |name: &str| {
            answer
                .get("usage")
                .and_then(|usage| usage.get(name))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        ReportedUsage {
            input: count("prompt_tokens"),
            output: count("completion_tokens"),
        }
    }
}

/// The sums of the usage answers reported. A stream's body adds its usage event's when it
/// sends it, so the tally is shared (`Arc`) rather than borrowed.
#[derive(Debug, Default)]
pub(crate) struct UsageTally {
    input: AtomicU64,
    output: AtomicU64,
}

impl UsageTally {
    pub(crate) fn add(&self, usage: ReportedUsage) {
        self.input.fetch_add(usage.input, Ordering::Relaxed);
        self.output.fetch_add(usage.output, Ordering::Relaxed);
    }
}

/// Every counter of the emulator except the per-key request counts, which live on [`Key`].
#[derive(Debug)]
pub(crate) struct Counters {
    routes: [RouteCounters; Route::COUNT],
    iam_by_key: Mutex<BTreeMap<String, u64>>,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) api_key_requests: AtomicU64,
    pub(crate) chat_streams: AtomicU64,
    pub(crate) open_streams: Arc<StreamGauge>,
    pub(crate) reported: Arc<UsageTally>,
    pub(crate) embeddings_inputs: AtomicU64,
    pub(crate) faults_injected: AtomicU64,
    pub(crate) connections_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            routes: std::array::from_fn(|_| RouteCounters::new()),
            iam_by_key: Mutex::default(),
            tokens_issued: AtomicU64::new(0),
            api_key_requests: AtomicU64::new(0),
            chat_streams: AtomicU64::new(0),
            open_streams: Arc::default(),
            reported: Arc::default(),
            embeddings_inputs: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
            connections_dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn route(&self, route: Route) -> &RouteCounters {
        &self.routes[route.index()]
    }

    pub(crate) fn iam_key(&self, key_id: &str) {
        let mut by_key = lock(&self.iam_by_key);
        match by_key.get_mut(key_id) {
            Some(n) => *n += 1,
            None => {
                by_key.insert(key_id.to_owned(), 1);
            }
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, keys: &[Arc<Key>]) -> Stats {
        let iam = self.route(Route::Iam);
        let chat = self.route(Route::Chat);
        let models = self.route(Route::Models);
        let embeddings = self.route(Route::Embeddings);
        Stats {
            iam_requests: iam.requests.load(Ordering::Relaxed),
            iam_requests_by_key: lock(&self.iam_by_key).clone(),
            iam_by_status: iam.statuses(),
            iam_in_flight_max: iam.in_flight_max.load(Ordering::Acquire),
            tokens_issued: self.tokens_issued.load(Ordering::Relaxed),
            api_key_requests: self.api_key_requests.load(Ordering::Relaxed),
            chat_requests: chat.requests.load(Ordering::Relaxed),
            chat_by_status: chat.statuses(),
            chat_by_key: by_key(keys, |key| &key.chat_requests),
            chat_streams: self.chat_streams.load(Ordering::Relaxed),
            chat_streams_open: self.open_streams.open.load(Ordering::Acquire),
            chat_streams_open_max: self.open_streams.max.load(Ordering::Acquire),
            chat_in_flight_max: chat.in_flight_max.load(Ordering::Acquire),
            models_requests: models.requests.load(Ordering::Relaxed),
            models_by_status: models.statuses(),
            embeddings_requests: embeddings.requests.load(Ordering::Relaxed),
            embeddings_by_status: embeddings.statuses(),
            embeddings_by_key: by_key(keys, |key| &key.embeddings_requests),
            embeddings_inputs: self.embeddings_inputs.load(Ordering::Relaxed),
            embeddings_in_flight_max: embeddings.in_flight_max.load(Ordering::Acquire),
            faults_injected: self.faults_injected.load(Ordering::Relaxed),
            connections_dropped: self.connections_dropped.load(Ordering::Relaxed),
            reported_input_tokens: self.reported.input.load(Ordering::Relaxed),
            reported_output_tokens: self.reported.output.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn reset(&self, keys: &[Arc<Key>]) {
        for route in &self.routes {
            route.reset();
        }
        lock(&self.iam_by_key).clear();
        let open = self.open_streams.open.load(Ordering::Acquire);
        self.open_streams.max.store(open, Ordering::Release);
        for counter in [
            &self.tokens_issued,
            &self.api_key_requests,
            &self.chat_streams,
            &self.embeddings_inputs,
            &self.faults_injected,
            &self.connections_dropped,
            &self.reported.input,
            &self.reported.output,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        for key in keys {
            key.reset();
        }
    }
}

/// The keys with a non-zero count in `counter`, by id.
fn by_key(keys: &[Arc<Key>], counter: impl Fn(&Key) -> &AtomicU64) -> BTreeMap<String, u64> {
    keys.iter()
        .filter_map(|key| {
            let n = counter(key).load(Ordering::Relaxed);
            (n > 0).then(|| (key.id.clone(), n))
        })
        .collect()
}
