//! Rows about honest streams and bodies (issue 17, items 9, 10, 11 and 18): an error sent
//! inside a stream, the SSE framing edges, a `200` whose body then fails counted as a body
//! error, and what the real Foundation Models API sends beyond OpenAI's minimum (reasoning,
//! model ids with a slash, model metadata, IAM's extra fields).

use std::time::Duration;

use evolution_client::{ChatRequest, Error, EvolutionInference, Metrics};
use evolution_emulator::{Emulator, Fault, Malformed, Route};
use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;

use crate::{KEY, SECRET, builder, client, echo, emulator, says, seen};

/// Every item of a stream, bounded by a real-time limit so that a hang fails the row.
async fn items(llm: &EvolutionInference, prompt: &str) -> Vec<evolution_client::Result<String>> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let stream = llm.stream(ChatRequest::from_prompt(prompt)).await.unwrap();
        stream
            .map(|item| item.map(|chunk| chunk.text().to_owned()))
            .collect::<Vec<_>>()
            .await
    })
    .await
    .expect("the stream ends instead of hanging")
}

/// The `Error::Api` parts, or a panic naming what came instead.
#[track_caller]
fn api_error(error: &Error) -> (u16, &str, Option<&str>) {
    match error {
        Error::Api {
            status,
            message,
            code,
        } => (status.as_u16(), message, code.as_deref()),
        other => panic!("expected Error::Api, got {other:?}"),
    }
}

/// `evolution_requests_total{outcome=..,status=..}` as recorded so far.
fn requests_total(snapshotter: &Snapshotter, outcome: &str, status: &str) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "evolution_requests_total")
        .filter(|(key, ..)| {
            let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
            labels.contains(&("outcome", outcome)) && labels.contains(&("status", status))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(count) => count,
            other => panic!("not a counter: {other:?}"),
        })
        .sum()
}

/// vLLM's way to fail after the `200` head: `data: {"error": {...}}`, then `[DONE]`. The
/// chunks before it arrive, then `Error::Api` with the error's status and message (never
/// `Ok` with a truncated answer), then the end; not retried, counted as a body error.
#[tokio::test(start_paused = true)]
async fn an_error_inside_a_stream_is_an_api_error() {
    let emu = emulator().await;
    let llm = client(&emu);
    emu.push_fault(
        Route::Chat,
        Fault::stream_error_after(
            3,
            json!({ "error": {
                "object": "error",
                "message": "generation failed: out of memory",
                "type": "InternalServerError",
                "param": null,
                "code": 500,
            }}),
        ),
    );
    let got = items(&llm, "one two three four").await;
    assert_eq!(got.len(), 4, "3 chunks, then the error: {got:?}");
    let text: String = got[..3]
        .iter()
        .map(|c| c.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(text, format!("[{KEY}] echo: "));
    let error = got[3].as_ref().unwrap_err();
    assert_eq!(
        api_error(error),
        (500, "generation failed: out of memory", Some("500"))
    );
    assert!(error.is_retryable() && !error.is_auth());
    says(
        &error.to_string(),
        &[
            "the Evolution API answered 500 Internal Server Error: generation failed: out of memory",
            "server error: retry later",
        ],
    );
    assert_eq!(seen(&emu), (1, 1), "the head was 200: not retried");
    let stats = llm.stats();
    assert_eq!((stats.total_requests, stats.successes), (1, 0));

    // `collect_text` fails the same way instead of returning the text so far.
    emu.push_fault(
        Route::Chat,
        Fault::stream_error_after(1, json!({ "error": "upstream closed" })),
    );
    let error = llm
        .stream(ChatRequest::from_prompt("x"))
        .await
        .unwrap()
        .collect_text()
        .await
        .unwrap_err();
    assert_eq!(api_error(&error), (500, "upstream closed", None));
    assert_eq!(seen(&emu), (1, 2));
}

/// `event: error` (OpenAI's newer APIs, some gateways) fails the stream too: a numeric code
/// is the status (here 429, retryable), a string code keeps 500 and is the error's code, and
/// an `error` event without an `error` object still fails with its message.
#[tokio::test(start_paused = true)]
async fn an_error_event_fails_the_stream() {
    let emu = emulator().await;
    let llm = client(&emu);
    let chunk = r#"data: {"choices":[{"delta":{"content":"par"}}]}"#;
    let cases = [
        (
            r#"event: error
data: {"error":{"message":"rate limited mid-stream","type":"rate_limit_error","code":429}}"#,
            (429, "rate limited mid-stream", Some("429")),
        ),
        (
            r#"event: error
data: {"error":{"message":"overloaded","type":"server_error","code":"server_error"}}"#,
            (500, "overloaded", Some("server_error")),
        ),
        (
            "event: error\ndata: {\"message\":\"model unloaded\"}",
            (500, "model unloaded", None),
        ),
    ];
    for (i, (event, expected)) in cases.into_iter().enumerate() {
        let body = format!("{chunk}\n\n{event}\n\ndata: [DONE]\n\n");
        emu.push_fault(Route::Chat, Fault::raw_body(200, "text/event-stream", body));
        let got = items(&llm, "x").await;
        assert_eq!(got.len(), 2, "case {i}: {got:?}");
        assert_eq!(got[0].as_ref().unwrap(), "par");
        assert_eq!(
            api_error(got[1].as_ref().unwrap_err()),
            expected,
            "case {i}"
        );
    }
    assert_eq!(seen(&emu), (1, 3));
    assert_eq!(llm.stats().successes, 0, "a failed stream is not a success");
}

/// The same two chunks, framed every way the SSE rules allow: the text is whole each time.
#[tokio::test(start_paused = true)]
async fn sse_framing_edges_are_read() {
    let emu = emulator().await;
    let llm = client(&emu);
    let hello = r#"{"choices":[{"delta":{"content":"Hello, "}}]}"#;
    let world = r#"{"choices":[{"delta":{"content":"world"}}]}"#;
    let framings: Vec<(&str, Vec<u8>)> = vec![
        (
            "a byte order mark first",
            format!("\u{feff}data: {hello}\n\ndata: {world}\n\ndata: [DONE]\n\n").into_bytes(),
        ),
        (
            "CR line ends",
            format!("data: {hello}\r\rdata: {world}\r\rdata: [DONE]\r\r").into_bytes(),
        ),
        (
            "CRLF line ends",
            format!("data: {hello}\r\n\r\ndata: {world}\r\n\r\ndata: [DONE]\r\n\r\n").into_bytes(),
        ),
        (
            "comments and other fields",
            format!(
                ": ping\n\nid: 1\nretry: 10\ndata: {hello}\n: keep-alive\n\nevent: message\ndata: {world}\n\n: bye\ndata: [DONE]\n\n"
            )
            .into_bytes(),
        ),
        (
            "multi-line data",
            format!(
                "data: {{\"choices\":[{{\"delta\":\ndata: {{\"content\":\"Hello, \"}}}}]}}\n\ndata: {world}\n\ndata: [DONE]\n\n"
            )
            .into_bytes(),
        ),
        (
            "no space after the colon",
            format!("data:{hello}\n\ndata:{world}\n\ndata:[DONE]\n\n").into_bytes(),
        ),
        (
            "no blank line after [DONE]",
            format!("data: {hello}\n\ndata: {world}\n\ndata: [DONE]").into_bytes(),
        ),
        (
            "mixed line ends",
            format!("data: {hello}\r\n\ndata: {world}\n\r\rdata: [DONE]\r\n").into_bytes(),
        ),
    ];
    for (i, (name, body)) in framings.into_iter().enumerate() {
        emu.push_fault(Route::Chat, Fault::raw_body(200, "text/event-stream", body));
        let text = llm
            .stream(ChatRequest::from_prompt("x"))
            .await
            .unwrap()
            .collect_text()
            .await;
        assert_eq!(
            text.as_deref().ok(),
            Some("Hello, world"),
            "{name}: {text:?}"
        );
        assert_eq!(seen(&emu), (1, i as u64 + 1));
    }
    assert_eq!(llm.stats().successes, 8);
}

/// A body that ends without `[DONE]` and without a blank line after its last chunk: that
/// chunk still arrives, then the cut is reported.
#[tokio::test(start_paused = true)]
async fn the_last_chunk_of_a_cut_stream_still_arrives() {
    let emu = emulator().await;
    let llm = client(&emu);
    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
                data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}";
    emu.push_fault(Route::Chat, Fault::raw_body(200, "text/event-stream", body));
    let got = items(&llm, "x").await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].as_deref().ok(), Some("a"));
    assert_eq!(got[1].as_deref().ok(), Some("b"));
    assert!(
        matches!(&got[2], Err(Error::Decode(message)) if message.contains("ended before `data: [DONE]`")),
        "{got:?}"
    );
    // Cut in the middle of its last line: the cut, not a JSON error.
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(200, "text/event-stream", "data: {\"choices\":[{\"del"),
    );
    let got = items(&llm, "x").await;
    assert!(
        matches!(&got[..], [Err(Error::Decode(message))] if message.contains("the connection was cut")),
        "{got:?}"
    );
}

/// A `200` whose body is then cut, malformed or carries an error is `body_error` (with its
/// status) in `evolution_requests_total` and not a success in `Stats`; a stream dropped
/// before its end is `cancelled`; a whole answer is `ok`.
#[tokio::test(start_paused = true)]
async fn bodies_that_fail_after_a_200_are_body_errors() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let emu = emulator().await;
    let llm = builder(&emu).metrics(Metrics::new()).build().unwrap();

    emu.push_fault(Route::Chat, Fault::malformed(Malformed::Truncated));
    assert!(matches!(llm.invoke("a").await, Err(Error::Decode(_))));
    emu.push_fault(Route::Chat, Fault::cut_stream(0));
    assert!(matches!(llm.invoke("b").await, Err(Error::Transport(_))));
    emu.push_fault(Route::Models, Fault::malformed(Malformed::NotJson));
    assert!(matches!(llm.models().await, Err(Error::Decode(_))));
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(200, "application/json", r#"{"choices":[]}"#),
    );
    assert!(matches!(llm.invoke("c").await, Err(Error::Decode(_))));
    emu.push_fault(
        Route::Chat,
        Fault::stream_error_after(2, json!({ "error": { "message": "failed", "code": 503 } })),
    );
    assert!(items(&llm, "d").await.last().unwrap().is_err());
    emu.push_fault(Route::Chat, Fault::cut_stream(2));
    assert!(items(&llm, "e").await.last().unwrap().is_err());
    assert_eq!(requests_total(&snapshotter, "body_error", "200"), 6);
    assert_eq!(requests_total(&snapshotter, "ok", "200"), 0);

    // Dropped after its first chunk: cancelled, not ok.
    let mut stream = llm.stream(ChatRequest::from_prompt("f g")).await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    assert_eq!(llm.stats().total_requests, 6, "not counted before its end");
    drop(stream);
    assert_eq!(requests_total(&snapshotter, "cancelled", "200"), 1);

    // Whole answers are ok.
    assert_eq!(llm.invoke("g").await.unwrap(), echo(KEY, "g"));
    llm.models().await.unwrap();
    assert_eq!(
        llm.stream(ChatRequest::from_prompt("h"))
            .await
            .unwrap()
            .collect_text()
            .await
            .unwrap(),
        echo(KEY, "h")
    );
    assert_eq!(requests_total(&snapshotter, "ok", "200"), 3);
    let stats = llm.stats();
    assert_eq!((stats.total_requests, stats.successes), (10, 3));
    assert_eq!(seen(&emu), (1, 8), "nothing after a 200 head is retried");
}

/// A reasoning model's `reasoning_content` (or vLLM's newer `reasoning`) is kept in answers
/// and chunks, apart from the text.
#[tokio::test(start_paused = true)]
async fn reasoning_is_kept_apart_from_the_text() {
    let model = "openai/gpt-oss-120b";
    let emu = Emulator::builder()
        .key(KEY, SECRET)
        .reasoning_model(model)
        .start()
        .await
        .unwrap();
    let llm = builder(&emu).model(model).build().unwrap();

    let answer = llm.chat(ChatRequest::from_prompt("why")).await.unwrap();
    assert_eq!(answer.text(), Some(echo(KEY, "why").as_str()));
    assert_eq!(answer.reasoning(), Some("thinking about: why"));

    let mut stream = llm.stream(ChatRequest::from_prompt("why")).await.unwrap();
    let (mut reasoning, mut text) = (String::new(), String::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        reasoning.push_str(chunk.reasoning());
        text.push_str(chunk.text());
    }
    assert_eq!(reasoning, "thinking about: why");
    assert_eq!(text, echo(KEY, "why"));

    // The newer field name, and both at once (no "duplicate field" failure).
    let bodies = [
        r#"{"choices":[{"message":{"role":"assistant","content":"a","reasoning":"r"}}]}"#,
        r#"{"choices":[{"message":{"role":"assistant","content":"a","reasoning_content":"r","reasoning":"r"}}]}"#,
    ];
    for body in bodies {
        emu.push_fault(Route::Chat, Fault::raw_body(200, "application/json", body));
        let answer = llm.chat(ChatRequest::from_prompt("x")).await.unwrap();
        assert_eq!(answer.reasoning(), Some("r"), "{body}");
    }
    let stream = "data: {\"choices\":[{\"delta\":{\"reasoning\":\"r\"}}]}\n\n\
                  data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(200, "text/event-stream", stream),
    );
    let chunks: Vec<_> = llm
        .stream(ChatRequest::from_prompt("x"))
        .await
        .unwrap()
        .collect()
        .await;
    let chunks: Vec<_> = chunks.into_iter().map(Result::unwrap).collect();
    assert_eq!((chunks[0].reasoning(), chunks[0].text()), ("r", ""));
    assert_eq!((chunks[1].reasoning(), chunks[1].text()), ("", "a"));

    // A reasoning answer sent back in a conversation carries its content only.
    let mut turn = answer.choices[0].message.clone();
    turn.content = "a".into();
    let request = ChatRequest::new().message(turn).user("and?");
    llm.chat(request).await.unwrap();
    let sent = emu.last_chat_request().unwrap();
    assert_eq!(
        sent["messages"][0],
        json!({ "role": "assistant", "content": "a" })
    );
}

/// A model id with a slash survives the request body, the model list and a metrics label;
/// the model list's metadata is read; a model the server does not serve is a 404 that
/// names the model to check.
#[tokio::test(start_paused = true)]
async fn a_model_id_with_a_slash_survives_every_path() {
    let model = "zai-org/GLM-4.7";
    let emu = Emulator::builder()
        .key(KEY, SECRET)
        .model(model)
        .model("GigaChat/GigaChat-2-Max")
        .start()
        .await
        .unwrap();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let metrics = Metrics::builder().label("model", model).build().unwrap();
    let llm = builder(&emu).model(model).metrics(metrics).build().unwrap();

    assert_eq!(llm.invoke("hi").await.unwrap(), echo(KEY, "hi"));
    assert_eq!(emu.last_chat_request().unwrap()["model"], model);
    let models = llm.models().await.unwrap();
    assert_eq!(models[0].id, model);
    assert_eq!(models[0].owned_by.as_deref(), Some("zai-org"));
    let metadata = models[0].metadata.as_ref().expect("metadata");
    assert_eq!(metadata.kind.as_deref(), Some("llm"));
    assert_eq!(metadata.function_calling, Some(true));
    assert_eq!(models[1].id, "GigaChat/GigaChat-2-Max");
    assert!(
        handle.render().contains(&format!(
            "evolution_requests_total{{model=\"{model}\",outcome=\"ok\",status=\"200\"}} 2"
        )),
        "{}",
        handle.render()
    );

    let error = llm
        .chat(ChatRequest::from_prompt("hi").model("zai-org/GLM-5"))
        .await
        .unwrap_err();
    assert_eq!(api_error(&error).0, 404);
    assert_eq!(api_error(&error).2, Some("model_not_found"));
    says(
        &error.to_string(),
        &["zai-org/GLM-5", "check the base URL and the model name"],
    );
    assert_eq!(seen(&emu), (1, 2), "a 404 is not retried");
}

/// IAM answers with Cloud.ru's extra fields (`id_token`, `token_type`, `scope`,
/// `not-before-policy`, and more) are read for their token and lifetime alone.
#[tokio::test(start_paused = true)]
async fn iam_answers_with_cloud_rus_extra_fields_are_accepted() {
    let full = br#"{"access_token":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln","expires_in":3600,
        "refresh_expires_in":0,"refresh_token":"","token_type":"Bearer","id_token":"eyJ.e30.x",
        "not-before-policy":0,"session_state":"0f3c","scope":"openid profile email"}"#;
    let grant = evolution_token::parse_token_response(full).unwrap();
    assert_eq!(grant.expires_in, Duration::from_secs(3600));

    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::patch_body(json!({ "session_state": "0f3c", "refresh_expires_in": 0 })),
    );
    let llm = client(&emu);
    assert_eq!(llm.invoke("hi").await.unwrap(), echo(KEY, "hi"));
    assert_eq!(seen(&emu), (1, 1));
    let info = llm.token_manager().info();
    assert!(
        info.expires_in
            .is_some_and(|left| left > Duration::from_secs(3500)),
        "{info:?}"
    );
}
