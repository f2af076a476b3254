//! async-openai's typed client on `evolution_client::async_openai`, against the in-process
//! emulator: every call goes through the Evolution stack.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, ChatCompletionTool, ChatCompletionToolChoiceOption,
    ChatCompletionTools, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    FunctionObject, ToolChoiceOptions,
};
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use evolution_client::async_openai::{HttpService, ServiceError, client, config};
use evolution_client::{Error, EvolutionInference, RetryConfig};
use evolution_emulator::{DEFAULT_EMBEDDING_DIMENSIONS, DEMO_MODEL, Emulator, Fault, Route};
use evolution_testkit::{
    BACKUP, BACKUP_SECRET, KEY, builder, emulator, emulator_builder, two_keys,
};
use futures_util::StreamExt;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use tokio::time::Instant;
use tower::ServiceExt;

fn chat(text: &str) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(DEMO_MODEL)
        .messages([ChatCompletionRequestUserMessage::from(text).into()])
        .build()
        .unwrap()
}

async fn ask(openai: &Client<OpenAIConfig>, text: &str) -> Result<String, OpenAIError> {
    let answer = openai.chat().create(chat(text)).await?;
    Ok(answer.choices[0]
        .message
        .content
        .clone()
        .unwrap_or_default())
}

fn llm(emu: &Emulator) -> EvolutionInference {
    builder(emu).build().unwrap()
}

#[tokio::test]
async fn a_chat_completion_goes_through_the_stack() {
    let emu = emulator().await;
    let llm = llm(&emu);
    let openai = client(&llm);
    assert_eq!(
        ask(&openai, "Привет!").await.unwrap(),
        format!("[{KEY}] echo: Привет!")
    );
    let stats = emu.stats();
    assert_eq!((stats.iam_requests, stats.chat_requests), (1, 1));
    assert_eq!(
        emu.last_chat_request().unwrap()["messages"][0]["content"],
        "Привет!"
    );
    assert_eq!(llm.stats().total_requests, 1);
    assert_eq!(llm.stats().successes, 1);
}

#[tokio::test]
async fn a_stream_arrives_chunk_by_chunk_and_is_counted_once_read() {
    let emu = emulator().await;
    let llm = llm(&emu);
    let openai = client(&llm);
    let mut request = chat("one two three four");
    request.stream = Some(true);
    let mut stream = openai.chat().create_stream(request).await.unwrap();
    let (mut text, mut chunks) = (String::new(), 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        // The stack asked for the usage and took its usage-only chunk out: async-openai
        // sees the events it asked for.
        assert!(chunk.usage.is_none());
        if let Some(piece) = chunk
            .choices
            .first()
            .and_then(|c| c.delta.content.as_deref())
        {
            text.push_str(piece);
            chunks += 1;
        }
    }
    assert_eq!(text, format!("[{KEY}] echo: one two three four"));
    assert!(chunks > 1, "the answer came in {chunks} chunk(s)");
    let stats = emu.stats();
    assert_eq!((stats.chat_streams, stats.chat_requests), (1, 1));
    let ours = llm.stats();
    assert_eq!((ours.total_requests, ours.successes), (1, 1));
    // The usage the stack asked for was recorded, as the emulator reported it.
    assert_eq!(ours.output_tokens, stats.reported_output_tokens);
    assert!(ours.output_tokens > 0);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_fails_after_the_read_timeout() {
    let emu = emulator().await;
    let llm = llm(&emu);
    let service = HttpService::new(&llm).read_timeout(Duration::from_secs(5));
    let openai = Client::with_config(config(&llm)).with_http_service(service);
    emu.push_fault(
        Route::Chat,
        Fault::stall_stream(2, Duration::from_secs(600)),
    );
    let mut request = chat("one two three four five six");
    request.stream = Some(true);
    let started = Instant::now();
    let mut stream = openai.chat().create_stream(request).await.unwrap();
    let (mut chunks, mut errors) = (0, 0);
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => chunks += 1,
            Err(OpenAIError::StreamError(_)) => errors += 1,
            Err(other) => panic!("expected a stream error, got {other:?}"),
        }
    }
    assert_eq!((chunks, errors), (2, 1));
    // Cut by the read timeout, not by the end of the server's 600 s pause.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    let stats = llm.stats();
    assert_eq!((stats.total_requests, stats.successes), (1, 0));
}

#[tokio::test]
async fn embeddings_go_through_the_stack() {
    let emu = emulator_builder()
        .embedding_model("embedder")
        .start()
        .await
        .unwrap();
    let llm = llm(&emu);
    let openai = client(&llm);
    let request = CreateEmbeddingRequestArgs::default()
        .model("embedder")
        .input(["hello world", "good bye"])
        .build()
        .unwrap();
    let answer = openai.embeddings().create(request).await.unwrap();
    assert_eq!(answer.data.len(), 2);
    assert!(
        answer
            .data
            .iter()
            .all(|e| e.embedding.len() == DEFAULT_EMBEDDING_DIMENSIONS)
    );
    assert_eq!(
        emu.last_embeddings_request(),
        Some(json!({"model": "embedder", "input": ["hello world", "good bye"]}))
    );
    assert_eq!(emu.stats().embeddings_requests, 1);
    assert_eq!(llm.stats().input_tokens, 4);
}

#[tokio::test]
async fn tools_reach_the_emulator_as_sent() {
    let emu = emulator().await;
    let llm = llm(&emu);
    let openai = client(&llm);
    let weather = FunctionObject {
        name: "get_weather".into(),
        description: Some("The weather in a city".into()),
        parameters: Some(json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        })),
        strict: Some(true),
    };
    let request = CreateChatCompletionRequestArgs::default()
        .model(DEMO_MODEL)
        .messages([ChatCompletionRequestUserMessage::from("Погода в Москве?").into()])
        .tools([ChatCompletionTools::Function(ChatCompletionTool {
            function: weather,
        })])
        .tool_choice(ChatCompletionToolChoiceOption::Mode(
            ToolChoiceOptions::Auto,
        ))
        .temperature(0.5)
        .build()
        .unwrap();
    let sent = serde_json::to_value(&request).unwrap();
    openai.chat().create(request).await.unwrap();
    // Byte for byte what async-openai encoded: the stack adds nothing to a plain call.
    assert_eq!(emu.last_chat_request().unwrap(), sent);
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_and_resent_invisibly() {
    let emu = emulator().await;
    let llm = llm(&emu);
    let openai = client(&llm);
    ask(&openai, "before").await.unwrap();
    let token = emu.issued_tokens().pop().unwrap();
    assert!(emu.revoke_token(&token));

    assert_eq!(
        ask(&openai, "after").await.unwrap(),
        format!("[{KEY}] echo: after")
    );
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 2, "one refresh for the revoked token");
    assert_eq!(
        stats.chat_status(401),
        1,
        "the rejected attempt was resent once"
    );
    assert_eq!(stats.chat_requests, 3);
    assert_eq!(llm.stats().total_requests, 2);
}

#[tokio::test]
async fn the_backup_key_serves_when_the_primary_is_disabled() {
    let emu = two_keys().await;
    emu.disable_key(KEY);
    let llm = builder(&emu)
        .backup_credentials(BACKUP, BACKUP_SECRET)
        .build()
        .unwrap();
    let openai = client(&llm);
    assert_eq!(
        ask(&openai, "switched").await.unwrap(),
        format!("[{BACKUP}] echo: switched")
    );
    let stats = emu.stats();
    assert_eq!(stats.chat_by_key.get(BACKUP), Some(&1));
    assert_eq!(llm.stats().fallback_switches, 1);
    assert!(!llm.stats().using_primary);
}

#[tokio::test]
async fn the_configs_api_key_is_ignored() {
    let emu = emulator().await;
    let llm = llm(&emu);
    // A client built by hand, with a key the emulator would refuse.
    let openai = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(llm.base_url())
            .with_api_key("sk-not-an-evolution-token"),
    )
    .with_http_service(HttpService::new(&llm));
    ask(&openai, "keyless").await.unwrap();
    let stats = emu.stats();
    assert_eq!((stats.chat_requests, stats.chat_status(401)), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn only_the_stacks_retries_are_made() {
    let emu = emulator().await;
    let llm = builder(&emu)
        .retry(RetryConfig::builder().max_attempts(2).build().unwrap())
        .build()
        .unwrap();
    let openai = client(&llm);
    for _ in 0..5 {
        emu.push_fault(Route::Chat, Fault::status(503));
    }
    let error = ask(&openai, "unlucky").await.unwrap_err();
    match error {
        OpenAIError::ApiError(error) => assert_eq!(error.status_code.as_u16(), 503),
        other => panic!("expected async-openai's ApiError, got {other:?}"),
    }
    // Our 2 attempts; async-openai's own retry would have made 4 calls of 2.
    assert_eq!(emu.stats().chat_requests, 2);
    assert_eq!(llm.stats().retries, 1);
}

#[tokio::test]
async fn a_stack_failure_downcasts_to_the_clients_error() {
    let emu = emulator().await;
    let llm = builder(&emu).secret("wrong-secret").build().unwrap();
    let error = ask(&client(&llm), "hi").await.unwrap_err();
    let OpenAIError::Boxed(boxed) = error else {
        panic!("expected a boxed Evolution error, got {error:?}");
    };
    assert!(
        matches!(boxed.downcast_ref::<Error>(), Some(Error::Auth(_))),
        "{boxed:?}"
    );
    assert_eq!(emu.stats().chat_requests, 0);
}

/// A factory as async-openai makes one, counting how often it is built.
fn factory(
    builds: &Arc<AtomicUsize>,
    make: impl Fn() -> reqwest::Request + Send + Sync + 'static,
) -> HttpRequestFactory {
    let builds = Arc::clone(builds);
    let make = Arc::new(make);
    HttpRequestFactory::new(move || {
        builds.fetch_add(1, Ordering::SeqCst);
        let request = make();
        async move { Ok(request) }
    })
}

#[tokio::test(start_paused = true)]
async fn a_multipart_form_is_built_once_and_sent_once() {
    let emu = emulator().await;
    let llm = llm(&emu);
    let url = format!("{}/chat/completions", llm.base_url());
    let builds = Arc::new(AtomicUsize::new(0));
    let factory = factory(&builds, move || {
        let audio = reqwest::multipart::Part::bytes(b"RIFF....WAVE".to_vec()).file_name("a.wav");
        reqwest::Client::new()
            .post(&url)
            .multipart(reqwest::multipart::Form::new().part("file", audio))
            .build()
            .unwrap()
    });
    emu.push_fault(Route::Chat, Fault::status(503));
    let response = HttpService::new(&llm).oneshot(factory).await.unwrap();
    // Not retried (`NoRetry`): the 503 comes back as the server sent it.
    assert_eq!(response.status(), 503);
    assert_eq!(
        builds.load(Ordering::SeqCst),
        1,
        "the form is never rebuilt"
    );
    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 1);
    assert_eq!(llm.stats().retries, 0);
    assert_eq!(
        response.url().as_str(),
        format!("{}/chat/completions", llm.base_url())
    );
}

#[tokio::test]
async fn a_url_outside_the_base_url_is_refused() {
    let emu = emulator().await;
    let llm = llm(&emu);
    let builds = Arc::new(AtomicUsize::new(0));
    let factory = factory(&builds, || {
        reqwest::Client::new()
            .post("http://elsewhere.invalid/v1/chat/completions")
            .body("{}")
            .build()
            .unwrap()
    });
    let error = HttpService::new(&llm).oneshot(factory).await.unwrap_err();
    assert!(
        matches!(
            error,
            ServiceError::Evolution(Error::Config {
                field: "base_url",
                ..
            })
        ),
        "{error:?}"
    );
    let stats = emu.stats();
    assert_eq!((stats.iam_requests, stats.chat_requests), (0, 0));
}

/// `name{label=value,...}` with labels sorted.
fn series_name(key: &metrics::Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

#[tokio::test]
async fn the_metrics_and_stats_count_async_openai_calls() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let emu = emulator_builder()
        .model(DEMO_MODEL)
        .embedding_model("embedder")
        .start()
        .await
        .unwrap();
    let llm = llm(&emu);
    let openai = client(&llm);
    ask(&openai, "one two").await.unwrap();
    let mut request = chat("three four");
    request.stream = Some(true);
    let mut stream = openai.chat().create_stream(request).await.unwrap();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    let request = CreateEmbeddingRequestArgs::default()
        .model("embedder")
        .input("five six")
        .build()
        .unwrap();
    openai.embeddings().create(request).await.unwrap();

    let counters: BTreeMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(v)) => Some((series_name(key.key()), v)),
            _ => None,
        })
        .filter(|(name, _)| {
            name.starts_with("evolution_requests_total")
                || name.starts_with("evolution_tokens_total")
        })
        .collect();
    let reported = emu.stats();
    let expected: BTreeMap<String, u64> = [
        (
            "evolution_requests_total{outcome=ok,status=200}".to_owned(),
            3,
        ),
        (
            "evolution_tokens_total{type=input}".to_owned(),
            reported.reported_input_tokens,
        ),
        (
            "evolution_tokens_total{type=output}".to_owned(),
            reported.reported_output_tokens,
        ),
    ]
    .into();
    assert_eq!(counters, expected);
    let stats = llm.stats();
    assert_eq!((stats.total_requests, stats.successes), (3, 3));
    assert_eq!(
        (stats.input_tokens, stats.output_tokens),
        (
            reported.reported_input_tokens,
            reported.reported_output_tokens
        )
    );
    assert!(reported.reported_input_tokens >= 6 && reported.reported_output_tokens > 0);
}
