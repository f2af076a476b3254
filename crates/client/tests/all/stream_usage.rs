//! A stream's token usage: the client asks for it (`stream_options.include_usage`), counts
//! it, and keeps the usage-only chunk from callers who did not ask for it, through `stream`
//! and through `send`.

use bytes::Bytes;
use evolution_client::{ChatRequest, EvolutionInference, Usage};
use futures_util::StreamExt;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{client, emulator};

const PROMPT: &str = "count these four words";

/// The usage of `PROMPT`'s answer, which the emulator makes the same way every time.
async fn usage_of_prompt(llm: &EvolutionInference) -> Usage {
    llm.chat(ChatRequest::from_prompt(PROMPT))
        .await
        .unwrap()
        .usage
        .expect("usage")
}

fn tokens(llm: &EvolutionInference) -> (u64, u64) {
    let stats = llm.stats();
    (stats.input_tokens, stats.output_tokens)
}

/// A streamed chat request as a caller that builds its own would write it, `extra` merged in.
fn streamed(llm: &EvolutionInference, extra: Value) -> Request<Bytes> {
    let mut body = json!({
        "model": llm.model(),
        "messages": [{ "role": "user", "content": PROMPT }],
        "stream": true,
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    Request::post(format!("{}/chat/completions", llm.base_url()))
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

/// The `data:` payloads of an event stream's body.
async fn events_of(response: http::Response<evolution_client::Body>) -> Vec<String> {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec())
        .unwrap()
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_stream_reports_its_usage_and_does_not_yield_the_usage_chunk() {
    let emu = emulator().await;
    let llm = client(&emu);
    let usage = usage_of_prompt(&llm).await;

    let mut stream = llm.stream(ChatRequest::from_prompt(PROMPT)).await.unwrap();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(!chunk.choices.is_empty(), "a usage-only chunk was yielded");
        chunks += 1;
    }
    assert!(chunks > 2);
    assert_eq!(stream.usage(), Some(usage));
    assert_eq!(
        tokens(&llm),
        (2 * usage.prompt_tokens, 2 * usage.completion_tokens)
    );
}

#[tokio::test]
async fn send_asks_a_stream_for_its_usage_and_keeps_the_usage_chunk_out() {
    let emu = emulator().await;
    let llm = client(&emu);
    let usage = usage_of_prompt(&llm).await;

    let response = llm.send(streamed(&llm, json!({}))).await.unwrap();
    let events = events_of(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        events.iter().all(|event| !event.contains("\"usage\"")),
        "{events:?}"
    );
    assert_eq!(
        tokens(&llm),
        (2 * usage.prompt_tokens, 2 * usage.completion_tokens),
        "counted all the same"
    );
}

#[tokio::test]
async fn send_leaves_a_callers_own_stream_options_alone() {
    let emu = emulator().await;
    let llm = client(&emu);
    let usage = usage_of_prompt(&llm).await;

    // Asked for: the usage chunk reaches the caller, and is counted once.
    let response = llm
        .send(streamed(
            &llm,
            json!({ "stream_options": { "include_usage": true } }),
        ))
        .await
        .unwrap();
    let events = events_of(response).await;
    let with_usage: Vec<&String> = events.iter().filter(|e| e.contains("\"usage\"")).collect();
    assert_eq!(with_usage.len(), 1, "{events:?}");
    assert_eq!(
        tokens(&llm),
        (2 * usage.prompt_tokens, 2 * usage.completion_tokens)
    );

    // Refused by the caller: not asked for behind its back, so not counted.
    let response = llm
        .send(streamed(
            &llm,
            json!({ "stream_options": { "include_usage": false } }),
        ))
        .await
        .unwrap();
    let events = events_of(response).await;
    assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    assert_eq!(
        tokens(&llm),
        (2 * usage.prompt_tokens, 2 * usage.completion_tokens)
    );
}

#[tokio::test]
async fn send_counts_the_usage_of_a_json_answer() {
    let emu = emulator().await;
    let llm = client(&emu);
    let usage = usage_of_prompt(&llm).await;

    let response = llm
        .send(streamed(&llm, json!({ "stream": false })))
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["usage"]["prompt_tokens"], usage.prompt_tokens);
    assert_eq!(
        tokens(&llm),
        (2 * usage.prompt_tokens, 2 * usage.completion_tokens)
    );
}

/// The measure: every way of calling, and the client's sums equal, exactly, what
/// the emulator says its answers reported.
#[tokio::test]
async fn the_tokens_counted_equal_the_tokens_the_server_reported() {
    let emu = evolution_testkit::emulator_builder()
        .model(evolution_emulator::DEMO_MODEL)
        .embedding_model("embedder")
        .start()
        .await
        .unwrap();
    let llm = client(&emu);
    for prompt in ["one", "two words", "three more words"] {
        llm.chat(ChatRequest::from_prompt(prompt)).await.unwrap();
        llm.invoke(prompt).await.unwrap();
        let mut stream = llm.stream(ChatRequest::from_prompt(prompt)).await.unwrap();
        while let Some(chunk) = stream.next().await {
            chunk.unwrap();
        }
    }
    llm.embeddings(evolution_client::EmbeddingsRequest::many(["a b", "c d e"]).model("embedder"))
        .await
        .unwrap();
    for extra in [
        json!({}),
        json!({ "stream": false }),
        json!({ "stream_options": { "include_usage": true } }),
    ] {
        let response = llm.send(streamed(&llm, extra)).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    let reported = emu.stats();
    assert!(reported.reported_input_tokens > 0 && reported.reported_output_tokens > 0);
    assert_eq!(
        tokens(&llm),
        (
            reported.reported_input_tokens,
            reported.reported_output_tokens
        )
    );
}

#[tokio::test]
async fn a_server_that_refuses_stream_options_is_remembered_and_streams_go_on() {
    let emu = emulator().await;
    emu.set_refuse_stream_options(true);
    let llm = client(&emu);
    for _ in 0..3 {
        let stream = llm.stream(ChatRequest::from_prompt(PROMPT)).await.unwrap();
        let text = stream.collect_text().await.unwrap();
        assert!(text.ends_with(PROMPT), "{text}");
    }
    let response = llm.send(streamed(&llm, json!({}))).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let stats = emu.stats();
    // One refusal, learnt once for the endpoint; every stream then went without the option.
    assert_eq!(stats.chat_status(400), 1);
    assert_eq!(stats.chat_requests, 5);
    assert_eq!(tokens(&llm), (0, 0), "no usage to count without the option");
    assert_eq!(llm.stats().successes, 4);
}
