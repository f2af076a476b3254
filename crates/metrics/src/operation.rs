//! [`Operation`]: the metrics of one chat or embeddings call, from its start to its end (for
//! a stream, its last chunk): time to first chunk, time per output chunk, token usage, and
//! the OpenTelemetry GenAI series.

use std::fmt;
use std::sync::Arc;

use metrics::{Histogram, Key, Label, SharedString};
use tokio::time::{Duration, Instant};

use crate::Metrics;
use crate::keys::METADATA;
use crate::names::gen_ai::{
    CLIENT_OPERATION_DURATION, CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
    CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, CLIENT_TOKEN_USAGE, ERROR_CANCELLED, ERROR_TYPE,
    OPERATION_NAME, OTHER, PROVIDER, PROVIDER_NAME, REQUEST_MODEL, RESPONSE_MODEL, SERVER_ADDRESS,
    SERVER_PORT, TOKEN_TYPE, TOKEN_TYPE_INPUT, TOKEN_TYPE_OUTPUT,
};

/// What an [`Operation`] is: the value of `gen_ai.operation.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OperationName {
    /// A chat completion, streamed or not.
    Chat,
    /// An embeddings call.
    Embeddings,
}

impl OperationName {
    /// `"chat"` or `"embeddings"`: the conventions' well-known values.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embeddings => "embeddings",
        }
    }
}

/// Records one chat or embeddings call, from [`Metrics::operation`] to [`finish`](Self::finish):
///
/// - [`chunk`](Self::chunk), for every chunk a stream yields: the first records the time
///   since the start in `evolution_time_to_first_chunk_seconds` and
///   `gen_ai.client.operation.time_to_first_chunk`, each later one the time since the one
///   before in `evolution_time_per_output_chunk_seconds` and
///   `gen_ai.client.operation.time_per_output_chunk`;
/// - [`usage`](Self::usage), for the usage the answer reported: `evolution_tokens_total`
///   and [`Stats`](crate::Stats) at once, `gen_ai.client.token.usage` at the end;
/// - [`response_model`](Self::response_model), for the model the answer named;
/// - [`finish`](Self::finish): `gen_ai.client.operation.duration`, with `error.type` when
///   the call failed. Dropped without it, the operation is recorded as failed with
///   `error.type="cancelled"`.
///
/// The `gen_ai.*` series carry `gen_ai.operation.name`, `gen_ai.provider.name`
/// (`cloud.ru`), `gen_ai.request.model`, `gen_ai.response.model` (once known),
/// `server.address` and `server.port`, after the handle's constant labels; model names are
/// bounded ([`MAX_MODELS`](crate::names::gen_ai::MAX_MODELS)). With the GenAI series
/// [switched off](crate::MetricsBuilder::gen_ai), only the `evolution_*` ones are recorded.
///
/// Times are read from tokio's clock. The chunk histograms are registered at the second
/// chunk and kept, so that a chunk costs a clock read and two histogram records: they go to
/// the recorder current then; the other series go to the recorder current when they are
/// recorded.
///
/// ```
/// use evolution_metrics::{Metrics, OperationName};
///
/// let metrics = Metrics::new();
/// let base_url = http::Uri::from_static("https://foundation-models.api.cloud.ru/v1");
/// let mut operation = metrics.operation(OperationName::Chat, "GigaChat/GigaChat-2-Max", &base_url);
/// for _chunk in ["Hel", "lo"] {
///     // Each chunk of a stream names the model that answers.
///     operation.response_model("GigaChat/GigaChat-2-Max");
///     operation.chunk();
/// }
/// operation.usage(12, 2);
/// assert!(operation.time_to_first_chunk().is_some());
/// operation.finish(None);
///
/// assert_eq!(metrics.stats().output_tokens, 2);
/// ```
pub struct Operation {
    metrics: Metrics,
    name: OperationName,
    start: Instant,
    last_chunk: Option<Instant>,
    time_to_first_chunk: Option<Duration>,
    /// Registered at the second chunk; again after the response model changed.
    chunk_histograms: Option<ChunkHistograms>,
    /// `None` with the GenAI series off.
    attributes: Option<Attributes>,
    /// Input and output tokens, for `gen_ai.client.token.usage` at the end.
    usage: Option<(u64, u64)>,
    finished: bool,
}

struct ChunkHistograms {
    evolution: Histogram,
    gen_ai: Option<Histogram>,
}

/// The GenAI attributes every series of an operation carries.
struct Attributes {
    name: OperationName,
    request_model: Option<SharedString>,
    response_model: Option<SharedString>,
    server_address: Option<SharedString>,
    server_port: Option<SharedString>,
}

impl Operation {
    pub(crate) fn start(
        metrics: Metrics,
        name: OperationName,
        request_model: &str,
        server: &http::Uri,
    ) -> Self {
        let attributes = metrics.has_gen_ai().then(|| {
            let (server_address, server_port) = server_labels(server);
            Attributes {
                name,
                request_model: metrics.models().value(request_model),
                response_model: None,
                server_address,
                server_port,
            }
        });
        Self {
            metrics,
            name,
            start: Instant::now(),
            last_chunk: None,
            time_to_first_chunk: None,
            chunk_histograms: None,
            attributes,
            usage: None,
            finished: false,
        }
    }

    /// Records one chunk of a stream: call it for every chunk the stream yields, as it
    /// yields it. See [`Operation`].
    pub fn chunk(&mut self) {
        let now = Instant::now();
        let Some(previous) = self.last_chunk.replace(now) else {
            let elapsed = now.saturating_duration_since(self.start);
            self.time_to_first_chunk = Some(elapsed);
            self.metrics.record_time_to_first_chunk(elapsed);
            if let Some(attributes) = &self.attributes {
                let labels = attributes.labels(self.metrics.constant(), None);
                histogram(CLIENT_OPERATION_TIME_TO_FIRST_CHUNK, labels)
                    .record(elapsed.as_secs_f64());
            }
            return;
        };
        let gap = now.saturating_duration_since(previous).as_secs_f64();
        let histograms = match &self.chunk_histograms {
            Some(histograms) => histograms,
            None => self
                .chunk_histograms
                .insert(chunk_histograms(&self.metrics, self.attributes.as_ref())),
        };
        histograms.evolution.record(gap);
        if let Some(gen_ai) = &histograms.gen_ai {
            gen_ai.record(gap);
        }
    }

    /// The time from the start to the first [`chunk`](Self::chunk), once there was one.
    pub fn time_to_first_chunk(&self) -> Option<Duration> {
        self.time_to_first_chunk
    }

    /// Records the usage the answer reported: `evolution_tokens_total{type}` and
    /// [`Stats`](crate::Stats) now (as [`Metrics::record_tokens`] does), and
    /// `gen_ai.client.token.usage` when the operation ends, with its final attributes
    /// (`output` only for a chat: embeddings generate no tokens). Usages given twice add up.
    pub fn usage(&mut self, input: u64, output: u64) {
        self.metrics.record_tokens(input, output);
        if self.attributes.is_some() {
            let (total_input, total_output) = self.usage.unwrap_or_default();
            self.usage = Some((
                total_input.saturating_add(input),
                total_output.saturating_add(output),
            ));
        }
    }

    /// Sets `gen_ai.response.model`, the model the answer named, on the series recorded from
    /// now on (the chunk histograms, the token usage and the duration): for a chunk that
    /// names the model, call it before [`chunk`](Self::chunk). An empty name is left out.
    pub fn response_model(&mut self, model: &str) {
        let Some(attributes) = &mut self.attributes else {
            return;
        };
        // Streams name their model in every chunk: most calls change nothing.
        if attributes.response_model.as_deref() == Some(model) {
            return;
        }
        let value = self.metrics.models().value(model);
        if attributes.response_model != value {
            attributes.response_model = value;
            self.chunk_histograms = None;
        }
    }

    /// Ends the operation: records `gen_ai.client.operation.duration` (from the start to
    /// now) and `gen_ai.client.token.usage`. `error_type` is `None` when the call
    /// succeeded, else the class of its failure, from a small fixed set (the HTTP status
    /// such as `"429"`, `"timeout"`, `"transport"`...): every distinct value is a new series.
    pub fn finish(mut self, error_type: Option<&str>) {
        self.end(error_type);
    }

    fn end(&mut self, error_type: Option<&str>) {
        self.finished = true;
        let Some(attributes) = &self.attributes else {
            return;
        };
        let constant = self.metrics.constant();
        let duration = self.start.elapsed().as_secs_f64();
        // An empty label is an absent one in Prometheus: a failure would pass for a success.
        let error = error_type.map(|error| match error {
            "" => Label::from_static_parts(ERROR_TYPE, OTHER),
            error => Label::new(ERROR_TYPE, error.to_owned()),
        });
        histogram(
            CLIENT_OPERATION_DURATION,
            attributes.labels(constant, error),
        )
        .record(duration);
        let Some((input, output)) = self.usage else {
            return;
        };
        let output = (attributes.name == OperationName::Chat).then_some(output);
        let usage = [(TOKEN_TYPE_INPUT, Some(input)), (TOKEN_TYPE_OUTPUT, output)];
        for (kind, tokens) in usage {
            let Some(tokens) = tokens else { continue };
            let kind = Label::from_static_parts(TOKEN_TYPE, kind);
            histogram(CLIENT_TOKEN_USAGE, attributes.labels(constant, Some(kind)))
                .record(tokens as f64);
        }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        if !self.finished {
            self.end(Some(ERROR_CANCELLED));
        }
    }
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attributes = self.attributes.as_ref();
        f.debug_struct("Operation")
            .field("name", &self.name)
            .field(
                "request_model",
                &attributes.and_then(|a| a.request_model.as_deref()),
            )
            .field(
                "response_model",
                &attributes.and_then(|a| a.response_model.as_deref()),
            )
            .field("time_to_first_chunk", &self.time_to_first_chunk)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Attributes {
    /// The constant labels, the GenAI attributes, then `extra`.
    fn labels(&self, constant: &[Label], extra: Option<Label>) -> Vec<Label> {
        let mut labels = Vec::with_capacity(constant.len() + 7);
        labels.extend_from_slice(constant);
        labels.push(Label::from_static_parts(OPERATION_NAME, self.name.as_str()));
        labels.push(Label::from_static_parts(PROVIDER_NAME, PROVIDER));
        let optional = [
            (REQUEST_MODEL, &self.request_model),
            (RESPONSE_MODEL, &self.response_model),
            (SERVER_ADDRESS, &self.server_address),
            (SERVER_PORT, &self.server_port),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                labels.push(Label::new(key, value.clone()));
            }
        }
        labels.extend(extra);
        labels
    }
}

fn chunk_histograms(metrics: &Metrics, attributes: Option<&Attributes>) -> ChunkHistograms {
    metrics::with_recorder(|recorder| ChunkHistograms {
        evolution: recorder.register_histogram(&metrics.keys().per_chunk, &METADATA),
        gen_ai: attributes.map(|attributes| {
            let labels = attributes.labels(metrics.constant(), None);
            let key = Key::from_parts(CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK, labels);
            recorder.register_histogram(&key, &METADATA)
        }),
    })
}

fn histogram(name: &'static str, labels: Vec<Label>) -> Histogram {
    let key = Key::from_parts(name, labels);
    metrics::with_recorder(|recorder| recorder.register_histogram(&key, &METADATA))
}

/// `server.address` and `server.port` of a base URL: its host (without the brackets of an
/// IPv6 address) and its port, or the scheme's default; neither without a host.
fn server_labels(uri: &http::Uri) -> (Option<SharedString>, Option<SharedString>) {
    let Some(host) = uri.host() else {
        return (None, None);
    };
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    });
    // Shared, so that the label values of each series recorded are reference counts, not
    // copies of the text.
    (
        Some(SharedString::from(Arc::<str>::from(host))),
        port.map(|port| SharedString::from(Arc::<str>::from(port.to_string()))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(uri: &'static str) -> (Option<String>, Option<String>) {
        let (address, port) = server_labels(&http::Uri::from_static(uri));
        (address.map(|a| a.to_string()), port.map(|p| p.to_string()))
    }

    /// The client moves an operation into the stream it returns.
    #[test]
    fn an_operation_can_move_between_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Operation>();
    }

    #[test]
    fn server_labels_come_from_the_base_url() {
        let some = |a: &str, p: &str| (Some(a.to_owned()), Some(p.to_owned()));
        assert_eq!(
            server("https://foundation-models.api.cloud.ru/v1"),
            some("foundation-models.api.cloud.ru", "443")
        );
        assert_eq!(server("http://localhost/v1"), some("localhost", "80"));
        assert_eq!(server("http://127.0.0.1:8080"), some("127.0.0.1", "8080"));
        assert_eq!(server("http://[::1]:9000/v1"), some("::1", "9000"));
        assert_eq!(server("/v1/chat"), (None, None));
    }
}
