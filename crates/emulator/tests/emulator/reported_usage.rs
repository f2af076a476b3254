//! The tally of the token usage the emulator's answers reported (`reported_input_tokens`,
//! `reported_output_tokens`): exactly what a client was sent, nothing it was not.

use std::time::Duration;

use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Malformed, Route, Stats};
use futures_util::StreamExt;
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{chat, chat_body, demo_token, http, sse_payloads, start, try_chat};

/// Tokens a client counted: the sums of the `usage` objects it received.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    input: u64,
    output: u64,
}

impl Seen {
    fn add(&mut self, usage: &Value) {
        self.input += usage["prompt_tokens"].as_u64().unwrap_or(0);
        self.output += usage["completion_tokens"].as_u64().unwrap_or(0);
    }

    fn assert_matches(&self, stats: &Stats) {
        assert_eq!(
            (stats.reported_input_tokens, stats.reported_output_tokens),
            (self.input, self.output),
            "the emulator's tally against the client's"
        );
    }
}

fn streamed(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = true.into();
    if include_usage {
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

/// Read a whole answer, adding the usage it carried to `seen`. A stream cut midway adds what
/// arrived.
async fn read(response: Response, seen: &mut Seen) {
    let is_stream = response.headers()["content-type"] == "text/event-stream";
    let mut text = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(text).unwrap();
    if is_stream {
        for event in text.split_terminator("\n\n") {
            let Some(payload) = event.strip_prefix("data: ") else {
                continue;
            };
            if let Ok(chunk) = serde_json::from_str::<Value>(payload)
                && chunk["usage"].is_object()
            {
                seen.add(&chunk["usage"]);
            }
        }
    } else if let Ok(answer) = serde_json::from_str::<Value>(&text)
        && answer["choices"].is_array()
    {
        seen.add(&answer["usage"]);
    }
}

async fn embed(http: &Client, emu: &Emulator, token: &str, input: Value) -> Value {
    let response = http
        .post(format!("{}/embeddings", emu.base_url()))
        .bearer_auth(token)
        .json(&json!({ "model": DEMO_MODEL, "input": input }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn non_streamed_chat_answers_are_tallied_exactly() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let mut seen = Seen::default();
    let mut conversation = chat_body("one two three");
    conversation["messages"] = json!([
        { "role": "system", "content": "be brief" },
        { "role": "user", "content": "four five six seven" },
    ]);
    conversation["n"] = 3.into();
    for body in [
        chat_body("hi"),
        chat_body("a longer question here"),
        conversation,
    ] {
        let response = chat(&http, &emu, &token, &body).await;
        assert_eq!(response.status(), 200);
        read(response, &mut seen).await;
    }
    assert!(seen.input > 0 && seen.output > 0, "{seen:?}");
    seen.assert_matches(&emu.stats());
}

#[tokio::test]
async fn embeddings_answers_are_tallied_as_input_only() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let one = embed(&http, &emu, &token, json!("three words here")).await;
    let many = embed(&http, &emu, &token, json!(["a b", "c d"])).await;
    let tokens = embed(&http, &emu, &token, json!([[1, 2, 3]])).await;
    assert_eq!(one["usage"]["prompt_tokens"], 3);
    assert_eq!(many["usage"]["prompt_tokens"], 4);
    assert_eq!(tokens["usage"]["prompt_tokens"], 3);
    let stats = emu.stats();
    assert_eq!(stats.reported_input_tokens, 10);
    assert_eq!(stats.reported_output_tokens, 0);
}

#[tokio::test]
async fn a_stream_counts_only_with_its_usage_event() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let mut seen = Seen::default();
    let without = chat(&http, &emu, &token, &streamed(chat_body("hi there"), false)).await;
    read(without, &mut seen).await;
    assert_eq!(seen, Seen::default());
    assert_eq!(emu.stats().reported_input_tokens, 0);

    let mut two = streamed(chat_body("hi there"), true);
    two["n"] = 2.into();
    for body in [streamed(chat_body("hi there"), true), two] {
        read(chat(&http, &emu, &token, &body).await, &mut seen).await;
    }
    assert_eq!(seen.input, 4, "two prompts of two words");
    seen.assert_matches(&emu.stats());
}

/// Faults that end a stream before its usage event keep it out; one that cuts after it
/// (everything but `[DONE]`) does not.
#[tokio::test]
async fn a_stream_a_fault_ends_before_its_usage_event_does_not_count() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let body = streamed(chat_body("hello there"), true);
    let mut seen = Seen::default();
    emu.push_fault(Route::Chat, Fault::cut_stream(2));
    emu.push_fault(
        Route::Chat,
        Fault::stream_error_after(3, json!({ "error": { "message": "failed", "code": 500 } })),
    );
    for _ in 0..2 {
        read(chat(&http, &emu, &token, &body).await, &mut seen).await;
    }
    assert_eq!(seen, Seen::default());
    seen.assert_matches(&emu.stats());

    emu.push_fault(Route::Chat, Fault::cut_stream(1000));
    read(chat(&http, &emu, &token, &body).await, &mut seen).await;
    assert!(seen.input > 0, "the usage event came before the cut");
    seen.assert_matches(&emu.stats());
    assert_eq!(emu.stats().connections_dropped, 2);
}

/// Error answers and bodies a fault supplies whole do not count (a malformed chat answer
/// carries a `usage` but no `choices`); a cut answer does not either; a patched answer counts
/// what it sends.
#[tokio::test]
async fn errors_canned_bodies_and_cut_answers_do_not_count_and_patches_do() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(Route::Chat, Fault::status(503));
    emu.push_fault(Route::Chat, Fault::malformed(Malformed::MissingField));
    emu.push_fault(Route::Chat, Fault::cut_stream(1));
    emu.push_fault(Route::Embeddings, Fault::status(429));
    for _ in 0..3 {
        if let Ok(response) = try_chat(&http, &emu, &token, &chat_body("hi")).await {
            // The cut answer's body fails midway.
            let _ = response.bytes().await;
        }
    }
    let refused = chat(&http, &emu, "evo_bogus", &chat_body("hi")).await;
    assert_eq!(refused.status(), 401);
    let throttled = http
        .post(format!("{}/embeddings", emu.base_url()))
        .bearer_auth(&token)
        .json(&json!({ "model": DEMO_MODEL, "input": "x y" }))
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429);
    let stats = emu.stats();
    assert_eq!(
        (stats.reported_input_tokens, stats.reported_output_tokens),
        (0, 0)
    );

    emu.push_fault(
        Route::Chat,
        Fault::patch_body(json!({ "usage": { "prompt_tokens": 40, "completion_tokens": 2 } })),
    );
    let mut seen = Seen::default();
    read(chat(&http, &emu, &token, &chat_body("hi")).await, &mut seen).await;
    assert_eq!(
        seen,
        Seen {
            input: 40,
            output: 2
        }
    );
    seen.assert_matches(&emu.stats());
}

/// A client that leaves a slow stream before its usage event was sent is not counted.
#[tokio::test(start_paused = true)]
async fn a_stream_its_client_left_before_the_usage_event_does_not_count() {
    let emu = Emulator::builder()
        .stream_interval(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    let response = chat(&http, &emu, &token, &streamed(chat_body("hi"), true)).await;
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    let left = Instant::now();
    while emu.stats().chat_streams_open > 0 {
        assert!(
            left.elapsed() < Duration::from_secs(10),
            "the stream stayed open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let stats = emu.stats();
    assert_eq!(stats.chat_streams, 1);
    assert_eq!(
        (stats.reported_input_tokens, stats.reported_output_tokens),
        (0, 0)
    );
}

#[tokio::test]
async fn the_tally_shows_in_stats_json_and_resets() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let mut seen = Seen::default();
    read(
        chat(&http, &emu, &token, &chat_body("one two")).await,
        &mut seen,
    )
    .await;
    let json: Value = http
        .get(format!("{}/_emulator/stats", emu.origin()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["reported_input_tokens"], seen.input);
    assert_eq!(json["reported_output_tokens"], seen.output);
    // Older stats JSON, without the fields, still reads.
    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("reported_input_tokens");
    old.as_object_mut()
        .unwrap()
        .remove("reported_output_tokens");
    let old: Stats = serde_json::from_value(old).unwrap();
    assert_eq!(old.reported_input_tokens, 0);

    emu.reset_stats();
    assert_eq!(emu.stats(), Stats::default());
}

#[tokio::test]
async fn sse_usage_matches_the_non_streamed_usage() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let plain: Value = chat(&http, &emu, &token, &chat_body("same words"))
        .await
        .json()
        .await
        .unwrap();
    let text = chat(
        &http,
        &emu,
        &token,
        &streamed(chat_body("same words"), true),
    )
    .await
    .text()
    .await
    .unwrap();
    let payloads = sse_payloads(&text);
    let usage: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(usage["usage"], plain["usage"]);
    let stats = emu.stats();
    let input = plain["usage"]["prompt_tokens"].as_u64().unwrap();
    let output = plain["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(stats.reported_input_tokens, 2 * input);
    assert_eq!(stats.reported_output_tokens, 2 * output);
}
