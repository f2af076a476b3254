//! [`Metrics`]: the handle every recording goes through.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use metrics::{Label, counter, gauge};
use tokio::time::Duration;

use crate::keys::{METADATA, RequestKeys};
use crate::models::ModelLabels;
use crate::names::{FALLBACK_ACTIVE, FALLBACK_SWITCHES_TOTAL, LABEL_REASON, RETRIES_TOTAL};
use crate::stats::StatsCells;
use crate::{MetricsBuilder, MetricsLayer, Operation, OperationName, Outcome, Stats};

/// Records the metrics of one client: requests (through [`MetricsLayer`]), token refreshes
/// (as a [`TokenObserver`](evolution_token::TokenObserver)), retries and fallback switches
/// (through the `record_*` methods), into the `metrics` facade and into [`Stats`].
///
/// Cheap to clone (one `Arc`); clones share their [`Stats`]. Every series carries the
/// handle's constant labels. What is sent to the facade goes to whichever recorder is
/// current when it is recorded (the thread's local recorder, else the global one), so the
/// handle may be built before the exporter is installed.
///
/// ```
/// use evolution_metrics::{FallbackSide, Metrics};
///
/// let metrics = Metrics::builder().label("client", "billing").build()?;
/// metrics.record_retry("503");
/// metrics.record_fallback_switch(FallbackSide::Backup, "auth_error");
///
/// let stats = metrics.stats();
/// assert_eq!(stats.retries, 1);
/// assert!(!stats.using_primary);
/// # Ok::<(), evolution_metrics::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Metrics {
    shared: Arc<Shared>,
}

struct Shared {
    labels: Vec<Label>,
    key_id_label: bool,
    gen_ai: bool,
    keys: RequestKeys,
    models: ModelLabels,
    stats: StatsCells,
}

/// Which key serves calls, for [`Metrics::record_fallback_switch`] and
/// [`Metrics::set_fallback_side`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackSide {
    /// The primary key (`evolution_fallback_active` 0).
    Primary,
    /// The backup key (`evolution_fallback_active` 1).
    Backup,
}

impl FallbackSide {
    /// `"primary"` or `"backup"`: the value of the `side` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Backup => "backup",
        }
    }

    fn gauge_value(self) -> f64 {
        match self {
            Self::Primary => 0.0,
            Self::Backup => 1.0,
        }
    }
}

impl Metrics {
    /// A handle without constant labels, with the GenAI series on. See
    /// [`builder`](Self::builder) for labels and the switch.
    pub fn new() -> Self {
        Self::describe();
        Self::from_parts(Vec::new(), false, true)
    }

    /// A builder for a handle with constant labels or the `key_id` label.
    pub fn builder() -> MetricsBuilder {
        MetricsBuilder::new()
    }

    pub(crate) fn from_parts(labels: Vec<Label>, key_id_label: bool, gen_ai: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                keys: RequestKeys::new(&labels),
                labels,
                key_id_label,
                gen_ai,
                models: ModelLabels::default(),
                stats: StatsCells::default(),
            }),
        }
    }

    /// Registers the description and unit of every metric of this crate with the current
    /// recorder (they become `# HELP` lines in Prometheus).
    ///
    /// Building a handle does it; call this again after installing a global recorder if
    /// the handle was built before. Idempotent.
    pub fn describe() {
        crate::names::describe();
    }

    /// A [`MetricsLayer`] recording into this handle.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer::new(self.clone())
    }

    /// A snapshot of what this handle and its clones recorded.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// The constant labels, in the order given.
    pub fn constant_labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.shared
            .labels
            .iter()
            .map(|label| (label.key(), label.value()))
    }

    /// Whether token series carry the `key_id` label.
    pub fn has_key_id_label(&self) -> bool {
        self.shared.key_id_label
    }

    /// Whether [`Operation`]s record the OpenTelemetry GenAI series
    /// ([`MetricsBuilder::gen_ai`]).
    pub fn has_gen_ai(&self) -> bool {
        self.shared.gen_ai
    }

    /// Starts the recording of one chat or embeddings call to the model `request_model` at
    /// the API whose base URL is `server`: see [`Operation`]. Its clock starts now.
    pub fn operation(
        &self,
        name: OperationName,
        request_model: &str,
        server: &http::Uri,
    ) -> Operation {
        Operation::start(self.clone(), name, request_model, server)
    }

    /// Records one finished logical call: `evolution_requests_total{outcome,status}`,
    /// `evolution_request_duration_seconds`, `evolution_request_attempts` (unless `attempts`
    /// is 0: unknown), `evolution_auth_errors_total` for [`Outcome::AuthError`], and
    /// [`Stats`].
    ///
    /// [`MetricsLayer`] calls it once per call; call it yourself only for calls that do
    /// not go through the layer.
    pub fn record_request(
        &self,
        outcome: Outcome,
        status: Option<StatusCode>,
        duration: Duration,
        attempts: u32,
    ) {
        let keys = &self.shared.keys;
        metrics::with_recorder(|recorder| {
            keys.with_requests_key(outcome, status, |key| {
                recorder.register_counter(key, &METADATA).increment(1);
            });
            recorder
                .register_histogram(&keys.duration, &METADATA)
                .record(duration.as_secs_f64());
            if attempts > 0 {
                recorder
                    .register_histogram(&keys.attempts, &METADATA)
                    .record(f64::from(attempts));
            }
            if outcome.is_auth() {
                recorder
                    .register_counter(&keys.auth_errors, &METADATA)
                    .increment(1);
            }
        });
        self.shared.stats.record_request(outcome, duration);
    }

    /// Records the tokens an answer's `usage` reported: `evolution_tokens_total{type}` and
    /// [`Stats::input_tokens`] / [`Stats::output_tokens`]. The client calls it for every
    /// answer that carries a usage.
    pub fn record_tokens(&self, input: u64, output: u64) {
        let keys = &self.shared.keys;
        metrics::with_recorder(|recorder| {
            for (key, tokens) in keys.tokens.iter().zip([input, output]) {
                if tokens > 0 {
                    recorder.register_counter(key, &METADATA).increment(tokens);
                }
            }
        });
        self.shared.stats.record_tokens(input, output);
    }

    /// Records a streamed call's time to its first chunk:
    /// `evolution_time_to_first_chunk_seconds`. The client's streams call it when they yield
    /// their first chunk.
    pub fn record_time_to_first_chunk(&self, elapsed: Duration) {
        let keys = &self.shared.keys;
        metrics::with_recorder(|recorder| {
            recorder
                .register_histogram(&keys.first_chunk, &METADATA)
                .record(elapsed.as_secs_f64());
        });
    }

    /// Records one retry: `evolution_retries_total{reason}` and [`Stats::retries`].
    ///
    /// `reason` must come from a small fixed set, such as evolution-retry's
    /// `RetryReason::label()` (`"503"`, `"timeout"`, `"connect"`, ...): every distinct value
    /// is a new series.
    pub fn record_retry(&self, reason: impl Into<Cow<'static, str>>) {
        counter!(
            RETRIES_TOTAL,
            self.labels([Label::new(LABEL_REASON, reason.into())])
        )
        .increment(1);
        self.shared.stats.record_retry();
    }

    /// Records a switch of the serving key to `to`:
    /// `evolution_fallback_switches_total{reason}`, `evolution_fallback_active`, and
    /// [`Stats::fallback_switches`] / [`Stats::using_primary`].
    ///
    /// `reason` must come from a small fixed set, such as evolution-fallback's
    /// `SwitchReason::as_str()` (`"api_unauthorized"`, `"iam_invalid_credentials"`, ...) or
    /// `FallbackEvent::as_str()` (`"failed_back"`, `"rotated"`): every distinct value is a new
    /// series.
    pub fn record_fallback_switch(&self, to: FallbackSide, reason: impl Into<Cow<'static, str>>) {
        counter!(
            FALLBACK_SWITCHES_TOTAL,
            self.labels([Label::new(LABEL_REASON, reason.into())])
        )
        .increment(1);
        self.shared.stats.record_switch();
        self.set_fallback_side(to);
    }

    /// Sets `evolution_fallback_active` and [`Stats::using_primary`] without counting a
    /// switch: for the initial state of a client with a backup key.
    pub fn set_fallback_side(&self, side: FallbackSide) {
        gauge!(FALLBACK_ACTIVE, self.labels([])).set(side.gauge_value());
        self.shared
            .stats
            .set_using_primary(side == FallbackSide::Primary);
    }

    /// The constant labels followed by `extra`.
    pub(crate) fn labels<const N: usize>(&self, extra: [Label; N]) -> Vec<Label> {
        let constant = &self.shared.labels;
        if N == 0 {
            return constant.clone();
        }
        let mut labels = Vec::with_capacity(constant.len() + N);
        labels.extend_from_slice(constant);
        labels.extend(extra);
        labels
    }

    pub(crate) fn constant(&self) -> &[Label] {
        &self.shared.labels
    }

    pub(crate) fn stats_cells(&self) -> &StatsCells {
        &self.shared.stats
    }

    pub(crate) fn keys(&self) -> &RequestKeys {
        &self.shared.keys
    }

    pub(crate) fn models(&self) -> &ModelLabels {
        &self.shared.models
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("labels", &self.constant_labels().collect::<Vec<_>>())
            .field("key_id_label", &self.shared.key_id_label)
            .field("gen_ai", &self.shared.gen_ai)
            .finish_non_exhaustive()
    }
}
