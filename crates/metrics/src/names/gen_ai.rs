//! The OpenTelemetry GenAI semantic conventions: metric and attribute names, units, and the
//! bucket boundaries the conventions advise.
//!
//! These follow [`SEMCONV_VERSION`] of `open-telemetry/semantic-conventions`
//! (`docs/gen-ai/gen-ai-metrics.md`, status *development*), the last release there before
//! the GenAI conventions moved to `open-telemetry/semantic-conventions-genai`. Its first
//! release (v0.1.0) renames the three timing metrics to `gen_ai.client.inference.*` and
//! replaces `gen_ai.client.token.usage` by token counters, and its unreleased changes reshape
//! those counters again; the names here are the ones instrumentations and dashboards use
//! today, and move when the new ones settle.
//!
//! Through the `metrics` facade the names keep their dots; the Prometheus exporter renders
//! them with underscores (`gen_ai_client_operation_duration`, label
//! `gen_ai_operation_name="chat"`). The series are recorded by an
//! [`Operation`](crate::Operation) and can be switched off with
//! [`MetricsBuilder::gen_ai`](crate::MetricsBuilder::gen_ai).

use metrics::{Unit, describe_histogram};

/// The version of the OpenTelemetry semantic conventions these names follow:
/// <https://github.com/open-telemetry/semantic-conventions/blob/v1.41.0/docs/gen-ai/gen-ai-metrics.md>.
pub const SEMCONV_VERSION: &str = "1.41.0";

/// Histogram of the duration of a GenAI operation (a whole call; for a stream, until its
/// end), in seconds ([`UNIT_SECONDS`]). Attributes: [`OPERATION_NAME`], [`PROVIDER_NAME`],
/// [`REQUEST_MODEL`], [`RESPONSE_MODEL`] when known, [`SERVER_ADDRESS`], [`SERVER_PORT`],
/// and [`ERROR_TYPE`] when the operation failed.
pub const CLIENT_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// Histogram of the tokens an operation used, by [`TOKEN_TYPE`] ([`UNIT_TOKENS`]). The
/// attributes of [`CLIENT_OPERATION_DURATION`] but [`ERROR_TYPE`], plus [`TOKEN_TYPE`].
pub const CLIENT_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// Histogram of the time from a streamed operation's start to its first chunk, in seconds.
/// The attributes of [`CLIENT_OPERATION_DURATION`] but [`ERROR_TYPE`].
pub const CLIENT_OPERATION_TIME_TO_FIRST_CHUNK: &str =
    "gen_ai.client.operation.time_to_first_chunk";
/// Histogram of the time between consecutive chunks of a stream (each chunk after the
/// first), in seconds. The attributes of [`CLIENT_OPERATION_DURATION`] but [`ERROR_TYPE`].
pub const CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK: &str =
    "gen_ai.client.operation.time_per_output_chunk";

/// The UCUM unit of the duration histograms.
pub const UNIT_SECONDS: &str = "s";
/// The UCUM unit of [`CLIENT_TOKEN_USAGE`] (`metrics::Unit::Count` through the facade).
pub const UNIT_TOKENS: &str = "{token}";

/// Attribute: the operation, [`OperationName::as_str`](crate::OperationName::as_str)
/// (`chat`, `embeddings`).
pub const OPERATION_NAME: &str = "gen_ai.operation.name";
/// Attribute: the provider, always [`PROVIDER`].
pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
/// Attribute: the model the request named (bounded, see [`MAX_MODELS`]).
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
/// Attribute: the model the answer named, when it did (bounded, see [`MAX_MODELS`]).
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
/// Attribute: [`TOKEN_TYPE_INPUT`] or [`TOKEN_TYPE_OUTPUT`], on [`CLIENT_TOKEN_USAGE`].
pub const TOKEN_TYPE: &str = "gen_ai.token.type";
/// Attribute: the class of error a failed operation ended with (an HTTP status such as
/// `429`, `timeout`, [`ERROR_CANCELLED`]...), on [`CLIENT_OPERATION_DURATION`] only.
pub const ERROR_TYPE: &str = "error.type";
/// Attribute: the host of the API's base URL.
pub const SERVER_ADDRESS: &str = "server.address";
/// Attribute: the port of the API's base URL (the scheme's default when it names none).
pub const SERVER_PORT: &str = "server.port";

/// The value of [`PROVIDER_NAME`]: Cloud.ru Evolution (not one of the conventions'
/// well-known values, which allow a custom one).
pub const PROVIDER: &str = "cloud.ru";
/// The [`TOKEN_TYPE`] of prompt tokens.
pub const TOKEN_TYPE_INPUT: &str = "input";
/// The [`TOKEN_TYPE`] of generated tokens.
pub const TOKEN_TYPE_OUTPUT: &str = "output";
/// The [`ERROR_TYPE`] of an operation dropped before it was finished.
pub const ERROR_CANCELLED: &str = "cancelled";
/// The conventions' fallback value: a model name past the [`MAX_MODELS`] bound.
pub const OTHER: &str = "_OTHER";

/// How many distinct model names (request and response models together) one
/// [`Metrics`](crate::Metrics) handle puts in labels: the first 64 seen; later ones, and
/// names longer than [`MAX_MODEL_LEN`] bytes, become [`OTHER`]. Model names may come from a
/// gateway's clients: without a bound, each new one would be a new set of series.
pub const MAX_MODELS: usize = 64;
/// The longest model name, in bytes, kept in a label.
pub const MAX_MODEL_LEN: usize = 256;

/// The advised buckets of [`CLIENT_OPERATION_DURATION`], also used for the two chunk
/// histograms: 10 ms to 82 s, doubling.
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// The advised buckets of [`CLIENT_TOKEN_USAGE`]: 1 to 4¹³ (67 million) tokens, by powers of 4.
pub const TOKEN_USAGE_BUCKETS: &[f64] = &[
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// The GenAI histograms with their advised buckets.
pub(crate) const HISTOGRAM_BUCKETS: [(&str, &[f64]); 4] = [
    (CLIENT_OPERATION_DURATION, DURATION_BUCKETS),
    (CLIENT_TOKEN_USAGE, TOKEN_USAGE_BUCKETS),
    (CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, DURATION_BUCKETS),
    (CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK, DURATION_BUCKETS),
];

/// Registers the descriptions (the conventions' own) and units of the GenAI metrics.
pub(crate) fn describe() {
    describe_histogram!(
        CLIENT_OPERATION_DURATION,
        Unit::Seconds,
        "GenAI operation duration."
    );
    describe_histogram!(
        CLIENT_TOKEN_USAGE,
        Unit::Count,
        "Number of input and output tokens used."
    );
    describe_histogram!(
        CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
        Unit::Seconds,
        "Time to receive the first chunk, measured from when the client issues the generation request to when the first chunk is received in the response stream."
    );
    describe_histogram!(
        CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
        Unit::Seconds,
        "Time per output chunk, recorded for each chunk received after the first one, measured as the time elapsed from the end of the previous chunk to the end of the current chunk."
    );
}
