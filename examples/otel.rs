//! OpenTelemetry traces over OTLP (evolution-client's `otel` feature). `otel::init` installs
//! a `tracing` subscriber that exports spans to an OTLP/HTTP endpoint; each call of the
//! client is a span named after the GenAI conventions (`chat {model}`, kind client, with
//! `gen_ai.*` and `server.*` attributes), a child of the application's span around it.
//!
//! The example starts an OTLP/HTTP receiver of its own on a free loopback port (what an
//! OpenTelemetry Collector serves on :4318), exports to it, makes a chat and a streamed
//! call, sends what is left, and prints the spans the receiver decoded. It fails if no
//! `chat` span arrived. With a Collector, point `OtelConfig::endpoint` at it (or set
//! `OTEL_EXPORTER_OTLP_ENDPOINT` and leave the endpoint unset).
//!
//! `cargo run --example otel`

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use evolution_client::ChatRequest;
use evolution_client::otel::{self, OtelConfig};
use evolution_examples::Target;
use futures_util::StreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use tracing::Instrument;

/// The service name the spans are exported under.
const SERVICE: &str = "otel-example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = Target::pick().await;
    let receiver = Receiver::start().await?;
    println!("OTLP/HTTP receiver at {}", receiver.endpoint);

    // Logs of the client still go to standard error; spans at INFO and above are exported.
    let guard = otel::init(
        OtelConfig::new()
            .endpoint(&receiver.endpoint)
            .service_name(SERVICE),
    )?;

    let llm = target.builder().build()?;
    // One trace: the application's span, the client's call spans inside it.
    async {
        let answer = llm
            .chat(ChatRequest::new().user("Что такое OpenTelemetry?"))
            .await?;
        println!("answer: {}", answer.text().unwrap_or_default());

        let mut stream = llm
            .stream(ChatRequest::new().user("А трассировка?"))
            .await?;
        print!("stream: ");
        while let Some(chunk) = stream.next().await {
            print!("{}", chunk?.text());
            let _ = std::io::stdout().flush();
        }
        println!();
        Ok::<_, evolution_client::Error>(())
    }
    .instrument(tracing::info_span!("ask"))
    .await?;

    // Shutting down sends the last batch and waits for it: a blocking call, kept off the
    // runtime's threads, on which the receiver answers.
    tokio::task::spawn_blocking(move || guard.shutdown()).await??;

    let received = receiver.received.lock().expect("not poisoned");
    println!(
        "\nThe receiver got {} export request(s), {} span(s) of `{}`:",
        received.requests,
        received.spans.len(),
        received.services.join(", ")
    );
    // The trace as a tree: the application's span, the client's spans inside it.
    let is_root = |span: &&ReceivedSpan| !received.spans.iter().any(|p| p.id == span.parent);
    for root in received.spans.iter().filter(is_root) {
        println!("  {root}");
        for child in received.spans.iter().filter(|s| s.parent == root.id) {
            println!("    {child}");
        }
    }
    let chat = format!("chat {}", target.model());
    let ask = received.spans.iter().find(|span| span.name == "ask");
    let chats = received
        .spans
        .iter()
        .filter(|span| span.name == chat && span.kind == "client")
        .filter(|span| ask.is_some_and(|ask| span.parent == ask.id && span.trace == ask.trace))
        .count();
    if chats == 2 {
        println!(
            "✓ two `{chat}` client spans, for the call and for the stream, in the trace of `ask`"
        );
        Ok(())
    } else {
        eprintln!("✗ {chats} client span(s) `{chat}` under `ask` exported, 2 expected");
        std::process::exit(1);
    }
}

/// An OTLP/HTTP trace receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, as the Collector's `otlp` receiver takes it.
struct Receiver {
    endpoint: String,
    received: Arc<Mutex<Received>>,
}

/// What the receiver decoded.
#[derive(Default)]
struct Received {
    requests: usize,
    /// The `service.name` of each resource that sent spans.
    services: Vec<String>,
    spans: Vec<ReceivedSpan>,
}

/// A span as it arrived.
struct ReceivedSpan {
    name: String,
    kind: &'static str,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    /// `key=value` pairs, the source location left out.
    attributes: Vec<String>,
}

impl std::fmt::Display for ReceivedSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.kind)?;
        self.attributes
            .iter()
            .try_for_each(|attribute| write!(f, " {attribute}"))
    }
}

impl Receiver {
    async fn start() -> std::io::Result<Self> {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { endpoint, received })
    }
}

async fn traces(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<([(header::HeaderName, &'static str); 1], Vec<u8>), (StatusCode, String)> {
    let content_type = headers.get(header::CONTENT_TYPE);
    if content_type.is_none_or(|value| value != "application/x-protobuf") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected application/x-protobuf, got {content_type:?}"),
        ));
    }
    let request = ExportTraceServiceRequest::decode(body)
        .map_err(|error| (StatusCode::BAD_REQUEST, error.to_string()))?;
    let mut received = received.lock().expect("not poisoned");
    received.requests += 1;
    for resource in &request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|resource| find(&resource.attributes, "service.name"))
            .unwrap_or_default();
        if !received.services.contains(&service) {
            received.services.push(service);
        }
        for span in resource.scope_spans.iter().flat_map(|scope| &scope.spans) {
            let kind = match SpanKind::try_from(span.kind) {
                Ok(SpanKind::Client) => "client",
                Ok(SpanKind::Internal) => "internal",
                _ => "other",
            };
            let attributes = span
                .attributes
                .iter()
                .filter(|kv| !kv.key.starts_with("code.") && kv.key != "target")
                .map(|kv| format!("{}={}", kv.key, show(kv.value.as_ref())))
                .collect();
            received.spans.push(ReceivedSpan {
                name: span.name.clone(),
                kind,
                trace: span.trace_id.clone(),
                id: span.span_id.clone(),
                parent: span.parent_span_id.clone(),
                attributes,
            });
        }
    }
    let response = ExportTraceServiceResponse::default().encode_to_vec();
    Ok(([(header::CONTENT_TYPE, "application/x-protobuf")], response))
}

fn find(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| show(kv.value.as_ref()))
}

fn show(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        Some(any_value::Value::DoubleValue(x)) => format!("{x:.3}"),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
