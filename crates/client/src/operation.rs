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

use evolution_metrics::names::gen_ai::{ERROR_CANCELLED, PROVIDER};
use evolution_metrics::{Metrics, OperationName};
use evolution_pool::Served;
use http::Uri;
use tracing::Span;
use tracing::field::Empty;

use crate::{Error, Usage};

/// What kind of call.
pub(crate) type Kind = OperationName;

/// A call in progress: its span, and what it records when it ends.
#[derive(Debug)]
pub(crate) struct Operation {
    span: Span,
    kind: Kind,
    /// The call's GenAI series and `evolution_*` ones (time to first chunk, time per chunk,
    /// tokens, duration); `None` once recorded.
    record: Option<evolution_metrics::Operation>,
    /// The deployment that answers, whose rate limit the usage settles.
    served: Option<Served>,
    /// The model the answer named last (every chunk of a stream names it).
    response_model: String,
}

impl Operation {
    /// Starts the span of a call to `uri` for `model`; the clock starts now.
    pub(crate) fn start(metrics: &Metrics, kind: Kind, model: &str, uri: &Uri) -> Self {
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or_else(|| match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        // A span's name is a literal: one invocation per operation, the fields alike.
        // Fields left empty are not exported (embeddings never get an output count).
        macro_rules! span {
            ($name:literal) => {
                tracing::info_span!(
                    target: "evolution_client",
                    $name,
                    otel.name = format_args!("{} {model}", $name).to_string(),
                    otel.kind = "client",
                    otel.status_code = Empty,
                    gen_ai.operation.name = $name,
                    gen_ai.provider.name = PROVIDER,
                    gen_ai.request.model = model,
                    gen_ai.response.model = Empty,
                    gen_ai.usage.input_tokens = Empty,
                    gen_ai.usage.output_tokens = Empty,
                    gen_ai.response.time_to_first_chunk = Empty,
                    server.address = host,
                    server.port = i64::from(port),
                    error.type = Empty,
                )
            };
        }
        let span = if kind == Kind::Embeddings {
            span!("embeddings")
        } else {
            span!("chat")
        };
        Self {
            span,
            kind,
            record: Some(metrics.operation(kind, model, uri)),
            served: None,
            response_model: String::new(),
        }
    }

    /// The call's span, to run its futures in.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Whether a chunk has come.
    pub(crate) fn has_chunk(&self) -> bool {
        self.record
            .as_ref()
            .is_some_and(|record| record.time_to_first_chunk().is_some())
    }

    /// A chunk of a stream arrived: the first records the time to first chunk, the others
    /// the time since the one before. Give the model a chunk names first.
    pub(crate) fn chunk(&mut self) {
        let Some(record) = self.record.as_mut() else {
            return;
        };
        let first = record.time_to_first_chunk().is_none();
        record.chunk();
        if first && let Some(elapsed) = record.time_to_first_chunk() {
            self.span
                .record("gen_ai.response.time_to_first_chunk", elapsed.as_secs_f64());
        }
    }

    /// The answer's model.
    pub(crate) fn response_model(&mut self, model: &str) {
        if model.is_empty() || model == self.response_model {
            return;
        }
        model.clone_into(&mut self.response_model);
        if let Some(record) = self.record.as_mut() {
            record.response_model(model);
        }
        self.span.record("gen_ai.response.model", model);
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
        if let Some(record) = self.record.as_mut() {
            record.usage(usage.prompt_tokens, usage.completion_tokens);
        }
        self.span
            .record("gen_ai.usage.input_tokens", otel_int(usage.prompt_tokens));
        if self.kind != Kind::Embeddings {
            self.span.record(
                "gen_ai.usage.output_tokens",
                otel_int(usage.completion_tokens),
            );
        }
    }

    /// The call ended: well, or with `error`.
    pub(crate) fn finish(mut self, error: Option<&Error>) {
        self.end(error.map(error_type));
    }

    /// The call failed: `error_type` says how (an HTTP status, `transport`...).
    pub(crate) fn fail(mut self, error_type: &'static str) {
        self.end(Some(error_type));
    }

    fn end(&mut self, error_type: Option<&'static str>) {
        if let Some(error_type) = error_type {
            self.span.record("error.type", error_type);
            self.span.record("otel.status_code", "ERROR");
        }
        if let Some(record) = self.record.take() {
            record.finish(error_type);
        }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        // Not ended: the stream or body was dropped before its end.
        if self.record.is_some() {
            self.end(Some(ERROR_CANCELLED));
        }
    }
}

/// A count as an OpenTelemetry integer: tracing-opentelemetry (0.34) has no `record_u64`,
/// so a `u64` field would be exported as text (tokio-rs/tracing-opentelemetry#267).
fn otel_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
