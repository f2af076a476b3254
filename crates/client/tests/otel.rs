//! The client's spans as OpenTelemetry sees them (the `otel` feature): each call is one
//! client span named `chat {model}` / `embeddings {model}` with the GenAI attributes, exactly
//! the values of the answer, and a failed call is an error span with its `error.type`.
//!
//! The spans go through `otel::layer` into the SDK's in-memory exporter.

use std::collections::HashMap;
use std::time::Duration;

use evolution_client::otel::opentelemetry::trace::{SpanKind, Status};
use evolution_client::otel::opentelemetry::{KeyValue, Value};
use evolution_client::otel::{self, opentelemetry_sdk};
use evolution_client::{ChatRequest, EmbeddingsRequest, Error};
use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Route};
use futures_util::StreamExt;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Level;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

/// The attributes of the span contract, and those `otel::layer` adds (the source location).
/// Nothing else may be on a span: no header, key or token can slip onto one.
const ALLOWED: [&str; 14] = [
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.response.time_to_first_chunk",
    "server.address",
    "server.port",
    "error.type",
    "code.file.path",
    "code.module.name",
    "code.line.number",
    "target",
];

/// Spans of this thread's calls, at the level `otel::init` exports by default.
struct Traced {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _default: DefaultGuard,
}

impl Traced {
    fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(otel::layer(&provider).with_filter(Targets::new().with_default(Level::INFO)));
        let _default = tracing::subscriber::set_default(subscriber);
        Self {
            exporter,
            provider,
            _default,
        }
    }

    /// The one finished span named `name`.
    fn span(&self, name: &str) -> SpanData {
        self.provider.force_flush().unwrap();
        let spans = self.exporter.get_finished_spans().unwrap();
        let mut named: Vec<SpanData> = spans.iter().filter(|s| s.name == name).cloned().collect();
        assert_eq!(
            named.len(),
            1,
            "one span named {name:?} among {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        named.remove(0)
    }

    fn reset(&self) {
        self.exporter.reset();
    }
}

fn attributes_of(span: &SpanData) -> HashMap<String, Value> {
    let attributes: HashMap<String, Value> = span
        .attributes
        .iter()
        .map(|KeyValue { key, value, .. }| (key.to_string(), value.clone()))
        .collect();
    for key in attributes.keys() {
        assert!(
            ALLOWED.contains(&key.as_str()),
            "`{key}` is not an attribute of the span contract: {attributes:?}"
        );
    }
    attributes
}

fn string(value: &str) -> Value {
    Value::String(value.to_owned().into())
}

fn int(value: u64) -> Value {
    Value::I64(i64::try_from(value).unwrap())
}

async fn emulator() -> Emulator {
    evolution_testkit::emulator_builder()
        .model(DEMO_MODEL)
        .embedding_model("embedder")
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_chat_is_one_client_span_with_the_answers_values() {
    let traced = Traced::new();
    let emu = emulator().await;
    let llm = evolution_testkit::client(&emu);

    let answer = llm
        .chat(
            ChatRequest::new()
                .system("Be brief.")
                .user("three words here"),
        )
        .await
        .unwrap();
    let usage = answer.usage.expect("the emulator reports usage");
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);

    let span = traced.span("chat demo-model");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(span.instrumentation_scope.name(), "evolution_client");
    let attributes = attributes_of(&span);
    let expected = [
        ("gen_ai.operation.name", string("chat")),
        ("gen_ai.provider.name", string("cloud.ru")),
        ("gen_ai.request.model", string(DEMO_MODEL)),
        ("gen_ai.response.model", string(&answer.model)),
        ("server.address", string("127.0.0.1")),
        ("server.port", int(emu.addr().port().into())),
        ("gen_ai.usage.input_tokens", int(usage.prompt_tokens)),
        ("gen_ai.usage.output_tokens", int(usage.completion_tokens)),
    ];
    for (key, value) in &expected {
        assert_eq!(attributes.get(*key), Some(value), "{key}: {attributes:?}");
    }
    assert_eq!(attributes.get("error.type"), None);
    assert_eq!(attributes.get("gen_ai.response.time_to_first_chunk"), None);

    // `invoke` is a chat too, with the same span.
    traced.reset();
    llm.invoke("again").await.unwrap();
    let span = traced.span("chat demo-model");
    assert_eq!(
        attributes_of(&span).get("gen_ai.operation.name"),
        Some(&string("chat"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_span_lasts_the_stream_and_has_its_first_chunk_time_and_usage() {
    let traced = Traced::new();
    let emu = emulator().await;
    emu.set_latency(Route::Chat, Duration::from_millis(250));
    emu.set_stream_interval(Duration::from_millis(40));
    let llm = evolution_testkit::client(&emu);
    // The token first, so that the measured time is the chat's alone.
    llm.token_manager().get_token().await.unwrap();

    let mut stream = llm
        .stream(ChatRequest::new().user("three words here"))
        .await
        .unwrap();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
        chunks += 1;
        if chunks == 1 {
            // Open until the stream ends (the span's own times are wall-clock times, which
            // paused time does not move: this is how its length is checked).
            traced.provider.force_flush().unwrap();
            assert!(traced.exporter.get_finished_spans().unwrap().is_empty());
        }
    }
    assert!(chunks > 1, "several chunks, one first");
    let usage = stream.usage().expect("the stream's usage chunk");
    drop(stream);

    let span = traced.span("chat demo-model");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.status, Status::Unset);
    let attributes = attributes_of(&span);
    assert_eq!(
        attributes.get("gen_ai.operation.name"),
        Some(&string("chat"))
    );
    assert_eq!(
        attributes.get("server.port"),
        Some(&int(emu.addr().port().into()))
    );
    // The emulator's 250 ms before its head, then the first event at once or after one
    // interval: never the whole stream's time.
    let Some(Value::F64(first_chunk)) = attributes.get("gen_ai.response.time_to_first_chunk")
    else {
        panic!("no time to first chunk: {attributes:?}");
    };
    assert!((0.25..=0.29).contains(first_chunk), "{first_chunk} s");
    // The usage of the final chunk, which the client asks for.
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    assert_eq!(
        attributes.get("gen_ai.usage.input_tokens"),
        Some(&int(usage.prompt_tokens))
    );
    assert_eq!(
        attributes.get("gen_ai.usage.output_tokens"),
        Some(&int(usage.completion_tokens))
    );
}

#[tokio::test]
async fn an_embeddings_call_is_one_client_span() {
    let traced = Traced::new();
    let emu = emulator().await;
    let llm = evolution_testkit::client(&emu);

    let embedded = llm
        .embeddings(EmbeddingsRequest::many(["a b c", "d e"]).model("embedder"))
        .await
        .unwrap();
    let usage = embedded.usage.expect("usage");

    let span = traced.span("embeddings embedder");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.status, Status::Unset);
    let attributes = attributes_of(&span);
    let expected = [
        ("gen_ai.operation.name", string("embeddings")),
        ("gen_ai.provider.name", string("cloud.ru")),
        ("gen_ai.request.model", string("embedder")),
        ("gen_ai.response.model", string(&embedded.model)),
        ("server.address", string("127.0.0.1")),
        ("server.port", int(emu.addr().port().into())),
        ("gen_ai.usage.input_tokens", int(usage.prompt_tokens)),
    ];
    for (key, value) in &expected {
        assert_eq!(attributes.get(*key), Some(value), "{key}: {attributes:?}");
    }
    // Embeddings generate nothing: no output count at all, rather than a zero.
    assert!(!attributes.contains_key("gen_ai.usage.output_tokens"));
}

#[tokio::test]
async fn a_failed_call_is_an_error_span_with_its_error_type() {
    let traced = Traced::new();
    let emu = emulator().await;
    let llm = evolution_testkit::client(&emu);
    // 400 is not retried: one attempt, one answer.
    emu.push_fault(Route::Chat, Fault::status(400));

    let error = llm.chat(ChatRequest::new().user("hi")).await.unwrap_err();
    assert!(
        matches!(&error, Error::Api { status, .. } if status.as_u16() == 400),
        "{error:?}"
    );

    let span = traced.span("chat demo-model");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    let attributes = attributes_of(&span);
    assert_eq!(attributes.get("error.type"), Some(&string("400")));
    assert_eq!(
        attributes.get("gen_ai.request.model"),
        Some(&string(DEMO_MODEL))
    );
    assert_eq!(attributes.get("gen_ai.usage.input_tokens"), None);
}
