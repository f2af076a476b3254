//! Metric and label names, their descriptions, and histogram buckets for exporters.
//!
//! The `evolution_*` names follow the Prometheus conventions: base units (`_seconds`),
//! `_total` on counters. Beside them, the OpenTelemetry GenAI names of [`gen_ai`]
//! (semantic conventions [`gen_ai::SEMCONV_VERSION`], on unless
//! [switched off](crate::MetricsBuilder::gen_ai)). Every series also carries the
//! [constant labels](crate::MetricsBuilder::label) of its [`Metrics`](crate::Metrics) handle.

pub mod gen_ai;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Counter of logical calls, labelled `outcome` and `status`.
pub const REQUESTS_TOTAL: &str = "evolution_requests_total";
/// Histogram of the latency of a logical call, retries included, in seconds.
pub const REQUEST_DURATION_SECONDS: &str = "evolution_request_duration_seconds";
/// Histogram of the attempts made by one logical call (1 when it was not retried).
pub const REQUEST_ATTEMPTS: &str = "evolution_request_attempts";
/// Counter of retries, labelled `reason`.
pub const RETRIES_TOTAL: &str = "evolution_retries_total";
/// Counter of finished token refreshes, labelled `result` and `trigger`.
pub const TOKEN_REFRESHES_TOTAL: &str = "evolution_token_refreshes_total";
/// Histogram of the duration of a token refresh (successful or not), in seconds.
pub const TOKEN_REFRESH_DURATION_SECONDS: &str = "evolution_token_refresh_duration_seconds";
/// Gauge: the lifetime of the current token when it was last known, in seconds (0 once it
/// was dropped). One series per key: with a backup key, labelled [`LABEL_SIDE`].
pub const TOKEN_EXPIRES_IN_SECONDS: &str = "evolution_token_expires_in_seconds";
/// Gauge: 0 while the primary key serves, 1 while the backup does.
pub const FALLBACK_ACTIVE: &str = "evolution_fallback_active";
/// Counter of switches between the primary and the backup key, labelled `reason`.
pub const FALLBACK_SWITCHES_TOTAL: &str = "evolution_fallback_switches_total";
/// Counter of logical calls that ended in an authentication or authorisation failure.
pub const AUTH_ERRORS_TOTAL: &str = "evolution_auth_errors_total";

/// Histogram of the time from a streamed call's start to its first chunk, in seconds
/// (time to first token, as LLM clients call it): retries and the wait for a token included.
pub const TIME_TO_FIRST_CHUNK_SECONDS: &str = "evolution_time_to_first_chunk_seconds";
/// Histogram of the time between consecutive chunks of a stream (each chunk after the
/// first, from the one before), in seconds.
pub const TIME_PER_OUTPUT_CHUNK_SECONDS: &str = "evolution_time_per_output_chunk_seconds";

/// Counter of tokens the API reported in its answers' `usage`, labelled `type` (`input`:
/// the prompt's, `output`: the generated ones).
pub const TOKENS_TOTAL: &str = "evolution_tokens_total";
/// Label: `input` or `output`, on [`TOKENS_TOTAL`].
pub const LABEL_TYPE: &str = "type";

/// Counter of calls sent to one deployment of a key pool, labelled `deployment` and
/// `outcome` (`success`, `key_rejected`, `rate_limited`, `server_error`, `failed`,
/// `timeout`, `cancelled`).
pub const DEPLOYMENT_REQUESTS_TOTAL: &str = "evolution_deployment_requests_total";
/// Gauge: a deployment's state, 0 healthy, 1 cooling, 2 circuit open.
pub const DEPLOYMENT_STATE: &str = "evolution_deployment_state";
/// Counter of cooldowns of a deployment, labelled `reason` (`key_rejected`,
/// `rate_limited`, `circuit_open`).
pub const DEPLOYMENT_COOLDOWNS_TOTAL: &str = "evolution_deployment_cooldowns_total";
/// Gauge: a deployment's calls in flight.
pub const DEPLOYMENT_IN_FLIGHT: &str = "evolution_deployment_in_flight";
/// Counter of times a deployment was skipped at its own rate limit, labelled `kind`
/// (`rpm`, `tpm`).
pub const RATE_LIMITED_TOTAL: &str = "evolution_rate_limited_total";

/// Label: the name of a deployment of a key pool.
pub const LABEL_DEPLOYMENT: &str = "deployment";
/// Label: which rate limit (`rpm`, `tpm`).
pub const LABEL_KIND: &str = "kind";
/// Label: the [`Outcome`](crate::Outcome) of a call.
pub const LABEL_OUTCOME: &str = "outcome";
/// Label: the numeric HTTP status of the answer, or [`STATUS_NONE`].
pub const LABEL_STATUS: &str = "status";
/// Label: why a retry or a fallback switch happened.
pub const LABEL_REASON: &str = "reason";
/// Label: [`RESULT_SUCCESS`] or [`RESULT_FAILURE`] for a token refresh.
pub const LABEL_RESULT: &str = "result";
/// Label: why a token refresh ran ([`RefreshTrigger::as_str`](evolution_token::RefreshTrigger::as_str)).
pub const LABEL_TRIGGER: &str = "trigger";
/// Label: the IAM key id, on token series only, and only when
/// [opted in](crate::MetricsBuilder::key_id_label).
pub const LABEL_KEY_ID: &str = "key_id";
/// Label: which key of a primary/backup pair a token series is about (`primary` or
/// `backup`, [`FallbackSide::as_str`](crate::FallbackSide::as_str)), on the token series
/// recorded through [`Metrics::token_observer`](crate::Metrics::token_observer).
pub const LABEL_SIDE: &str = "side";

/// The `status` value when no HTTP answer was received (timeout, transport error...).
pub const STATUS_NONE: &str = "none";
/// The `result` value of a successful refresh.
pub const RESULT_SUCCESS: &str = "success";
/// The `result` value of a failed refresh.
pub const RESULT_FAILURE: &str = "failure";

/// Label names this crate sets itself, plus those Prometheus reserves for histograms and
/// summaries: a constant label may not use them.
pub const RESERVED_LABELS: &[&str] = &[
    LABEL_OUTCOME,
    LABEL_STATUS,
    LABEL_REASON,
    LABEL_RESULT,
    LABEL_TRIGGER,
    LABEL_KEY_ID,
    LABEL_SIDE,
    LABEL_DEPLOYMENT,
    LABEL_KIND,
    LABEL_TYPE,
    // The GenAI attributes as the Prometheus exporter renders them: a constant label of the
    // same name would be a duplicate label there.
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gen_ai_token_type",
    "error_type",
    "server_address",
    "server_port",
    "le",
    "quantile",
];

/// Suggested buckets for [`REQUEST_DURATION_SECONDS`]: 5 ms to 2 minutes (inference calls
/// take seconds; the default request timeout is 60 s).
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
/// Suggested buckets for [`TIME_PER_OUTPUT_CHUNK_SECONDS`]: 1 ms to 10 s (chunks of a
/// healthy stream come tens of milliseconds apart; the idle timeout bounds the gap).
pub const TIME_PER_OUTPUT_CHUNK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0,
    10.0,
];
/// Suggested buckets for [`REQUEST_ATTEMPTS`].
pub const REQUEST_ATTEMPTS_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0];
/// Suggested buckets for [`TOKEN_REFRESH_DURATION_SECONDS`]: 10 ms to 1 minute.
pub const TOKEN_REFRESH_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every histogram of this crate with its suggested buckets (the GenAI ones with the
/// conventions' advice), for exporters that need them up front (the Prometheus exporter
/// renders histograms without buckets as summaries).
///
/// ```
/// use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
///
/// let mut builder = PrometheusBuilder::new();
/// for (name, buckets) in evolution_metrics::names::histogram_buckets() {
///     builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
/// }
/// # Ok::<(), metrics_exporter_prometheus::BuildError>(())
/// ```
pub fn histogram_buckets() -> impl Iterator<Item = (&'static str, &'static [f64])> + Clone {
    [
        (REQUEST_DURATION_SECONDS, REQUEST_DURATION_BUCKETS),
        // A first chunk is a call's head plus the first token: the calls' buckets fit.
        (TIME_TO_FIRST_CHUNK_SECONDS, REQUEST_DURATION_BUCKETS),
        (TIME_PER_OUTPUT_CHUNK_SECONDS, TIME_PER_OUTPUT_CHUNK_BUCKETS),
        (REQUEST_ATTEMPTS, REQUEST_ATTEMPTS_BUCKETS),
        (
            TOKEN_REFRESH_DURATION_SECONDS,
            TOKEN_REFRESH_DURATION_BUCKETS,
        ),
    ]
    .into_iter()
    .chain(gen_ai::HISTOGRAM_BUCKETS)
}

/// Registers the description and unit of every metric with the current recorder.
///
/// Idempotent. See [`Metrics::describe`](crate::Metrics::describe).
pub(crate) fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Logical calls to the Evolution API, by outcome and HTTP status (`none` without an answer)"
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Latency of a logical call to the Evolution API until the response head, retries included"
    );
    describe_histogram!(
        REQUEST_ATTEMPTS,
        Unit::Count,
        "Attempts made by one logical call (1 when it was not retried)"
    );
    describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Retries of calls to the Evolution API, by reason"
    );
    describe_counter!(
        TOKEN_REFRESHES_TOTAL,
        Unit::Count,
        "Finished IAM token refreshes, by result and trigger"
    );
    describe_histogram!(
        TOKEN_REFRESH_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of an IAM token refresh (successful or failed), its own retries included"
    );
    describe_gauge!(
        TOKEN_EXPIRES_IN_SECONDS,
        Unit::Seconds,
        "Lifetime of the current IAM token when last known: set on refresh, 0 once invalidated"
    );
    describe_gauge!(
        FALLBACK_ACTIVE,
        "Which key serves calls: 0 the primary, 1 the backup"
    );
    describe_counter!(
        FALLBACK_SWITCHES_TOTAL,
        Unit::Count,
        "Switches between the primary and the backup key, by reason"
    );
    describe_histogram!(
        TIME_TO_FIRST_CHUNK_SECONDS,
        Unit::Seconds,
        "Time from a streamed call's start to its first chunk (time to first token), retries included"
    );
    describe_histogram!(
        TIME_PER_OUTPUT_CHUNK_SECONDS,
        Unit::Seconds,
        "Time between consecutive chunks of a stream, for each chunk after the first"
    );
    describe_counter!(
        TOKENS_TOTAL,
        Unit::Count,
        "Tokens the Evolution API reported in its answers' usage, by type (input, output)"
    );
    describe_counter!(
        DEPLOYMENT_REQUESTS_TOTAL,
        Unit::Count,
        "Calls sent to one deployment of the key pool, by outcome"
    );
    describe_gauge!(
        DEPLOYMENT_STATE,
        "State of a deployment of the key pool: 0 healthy, 1 cooling down, 2 circuit open"
    );
    describe_counter!(
        DEPLOYMENT_COOLDOWNS_TOTAL,
        Unit::Count,
        "Cooldowns of a deployment of the key pool, by reason"
    );
    describe_gauge!(
        DEPLOYMENT_IN_FLIGHT,
        "Calls in flight to a deployment of the key pool"
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        Unit::Count,
        "Times a deployment was skipped at its own rate limit, by kind (rpm, tpm)"
    );
    describe_counter!(
        AUTH_ERRORS_TOTAL,
        Unit::Count,
        "Logical calls that ended in an authentication failure (401/403, or a rejected IAM key)"
    );
    gen_ai::describe();
}
