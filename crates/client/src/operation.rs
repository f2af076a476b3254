//! One call as the OpenTelemetry GenAI conventions see it: a `tracing` span named
//! `chat {model}` (or `embeddings {model}`) with their attributes, and the call's GenAI
//! metrics.
//!
//! The span's fields follow the GenAI semantic conventions' client span: the operation,
//! the provider (`cloud.ru`), the requested and answering models, the server, the tokens the
//! answer reported, the time to the first chunk of a stream, and `error.type` on failure.
//! `tracing-opentelemetry` reads `otel.name`, `otel.kind` and `otel.status_code` as the
//! span's name, kind and status (the `otel` feature wires it). The span is at `INFO`:
//! without a subscriber that listens, it costs a check.

use std::time::Duration;

use evolution_metrics::Metrics;
use evolution_pool::Served;
use http::Uri;
use tokio::time::Instant;
use tracing::Span;
use tracing::field::Empty;

use crate::{Error, Usage};

/// `gen_ai.provider.name`.
pub(crate) const PROVIDER: &str = "cloud.ru";

/// What kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Embeddings,
}

/// A call in progress: its span, and what it records when it ends.
#[derive(Debug)]
pub(crate) struct Operation {
    span: Span,
    started: Instant,
    metrics: Metrics,
    first_chunk: Option<Duration>,
    /// The deployment that answers, whose rate limit the usage settles.
    served: Option<Served>,
    finished: bool,
}

impl Operation {
    /// Starts the span of a call to `uri` for `model`; the clock starts now.
    pub(crate) fn start(metrics: &Metrics, kind: Kind, model: &str, uri: &Uri) -> Self {
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or_else(|| match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        let span = match kind {
            Kind::Chat => tracing::info_span!(
                target: "evolution_client",
                "chat",
                otel.name = format_args!("chat {model}").to_string(),
                otel.kind = "client",
                otel.status_code = Empty,
                gen_ai.operation.name = "chat",
                gen_ai.provider.name = PROVIDER,
                gen_ai.request.model = model,
                gen_ai.response.model = Empty,
                gen_ai.usage.input_tokens = Empty,
                gen_ai.usage.output_tokens = Empty,
                gen_ai.response.time_to_first_chunk = Empty,
                server.address = host,
                server.port = port,
                error.type = Empty,
            ),
            Kind::Embeddings => tracing::info_span!(
                target: "evolution_client",
                "embeddings",
                otel.name = format_args!("embeddings {model}").to_string(),
                otel.kind = "client",
                otel.status_code = Empty,
                gen_ai.operation.name = "embeddings",
                gen_ai.provider.name = PROVIDER,
                gen_ai.request.model = model,
                gen_ai.response.model = Empty,
                gen_ai.usage.input_tokens = Empty,
                gen_ai.usage.output_tokens = Empty,
                server.address = host,
                server.port = port,
                error.type = Empty,
            ),
        };
        Self {
            span,
            started: Instant::now(),
            metrics: metrics.clone(),
            first_chunk: None,
            served: None,
            finished: false,
        }
    }

    /// The call's span, to run its futures in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// A chunk of a stream arrived: the first records the time to first chunk.
    pub(crate) fn chunk(&mut self) {
        if self.first_chunk.is_none() {
            let elapsed = self.started.elapsed();
            self.first_chunk = Some(elapsed);
            self.metrics.record_time_to_first_chunk(elapsed);
            self.span
                .record("gen_ai.response.time_to_first_chunk", elapsed.as_secs_f64());
        }
    }

    /// The answer's model.
    pub(crate) fn response_model(&mut self, model: &str) {
        if !model.is_empty() {
            self.span.record("gen_ai.response.model", model);
        }
    }

    /// The deployment of a pool that answers: the usage settles its token limit.
    pub(crate) fn served(&mut self, served: Option<Served>) {
        self.served = served.filter(|served| served.estimated_tokens() > 0);
    }

    /// The tokens the answer reported: counted in the metrics, put on the span, and
    /// settled with the deployment's token limit (its estimate is corrected).
    pub(crate) fn usage(&mut self, usage: &Usage) {
        if let Some(served) = self.served.take() {
            served.settle(u32::try_from(usage.total_tokens).unwrap_or(u32::MAX));
        }
        self.metrics
            .record_tokens(usage.prompt_tokens, usage.completion_tokens);
        self.span
            .record("gen_ai.usage.input_tokens", usage.prompt_tokens);
        self.span
            .record("gen_ai.usage.output_tokens", usage.completion_tokens);
    }

    /// The call ended: well, or with `error`.
    pub(crate) fn finish(mut self, error: Option<&Error>) {
        self.end(error.map(error_type));
    }

    /// The call failed: `error_type` says how (an HTTP status, `transport`...).
    pub(crate) fn fail(mut self, error_type: &'static str) {
        self.end(Some(error_type));
    }

    fn end(&mut self, error_type: Option<&str>) {
        self.finished = true;
        if let Some(error_type) = error_type {
            self.span.record("error.type", error_type);
            self.span.record("otel.status_code", "ERROR");
        }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        if !self.finished {
            self.end(Some("cancelled"));
        }
    }
}

/// `error.type`: low in cardinality, as the conventions ask: the HTTP status of an answer,
/// else what failed.
pub(crate) fn error_type(error: &Error) -> &'static str {
    match error {
        Error::Api { status, .. }
        | Error::QuotaExhausted { status, .. }
        | Error::RetryAfterTooLong { status, .. } => status_str(*status),
        Error::StreamTimeout(timeout) => timeout.as_str(),
        Error::Timeout(_) => "timeout",
        Error::Transport(_) => "transport",
        Error::Decode(_) => "decode",
        Error::Auth(_) => "auth",
        Error::KeysRejected(_) => "keys_rejected",
        Error::Unavailable(_) => "unavailable",
        Error::UntrustedCertificate { .. } => "untrusted_certificate",
        Error::Config { .. } => "config",
    }
}

/// The status as text, without allocating for the statuses an API answers.
pub(crate) fn status_str(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "400",
        401 => "401",
        402 => "402",
        403 => "403",
        404 => "404",
        408 => "408",
        409 => "409",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
