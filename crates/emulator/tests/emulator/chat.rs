//! `POST /v1/chat/completions`.

use evolution_emulator::{DEMO_MODEL, Emulator};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{
    chat, chat_body, chat_url, demo_token, error_of, http, sse_payloads, start, token_for,
};

#[tokio::test]
async fn echoes_the_last_user_message_with_the_key_id() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let response = chat(&http, &emu, &token, &chat_body("hello there")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], DEMO_MODEL);
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[0]["finish_reason"], "stop");
    assert_eq!(choices[0]["message"]["role"], "assistant");
    assert_eq!(
        choices[0]["message"]["content"],
        "[demo-key-id] echo: hello there"
    );
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], 2);
    assert_eq!(usage["completion_tokens"], 4);
    assert_eq!(usage["total_tokens"], 6);
}

#[tokio::test]
async fn the_answer_names_the_key_of_the_token() {
    let emu = Emulator::builder()
        .key("primary", "p")
        .key("backup", "b")
        .start()
        .await
        .unwrap();
    let http = http();
    for (key_id, secret) in [("primary", "p"), ("backup", "b")] {
        let token = token_for(&http, &emu, key_id, secret).await;
        let body: Value = chat(&http, &emu, &token, &chat_body("ping"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("[{key_id}] echo: ping")
        );
    }
}

#[tokio::test]
async fn echoes_the_last_user_message_of_a_conversation_and_ignores_other_fields() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let body = json!({
        "model": "any-model",
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "first" },
            { "role": "assistant", "content": "answer" },
            { "role": "user", "content": "second question" },
        ],
        "max_tokens": 512,
        "temperature": 1.0,
        "top_p": 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "stop": ["\n"],
        "n": 1,
        "stream": false,
        "user": "someone",
    });
    let answer: Value = chat(&http, &emu, &token, &body).await.json().await.unwrap();
    assert_eq!(answer["model"], "any-model");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "[demo-key-id] echo: second question"
    );
    assert_eq!(answer["usage"]["prompt_tokens"], 6);
}

#[tokio::test]
async fn n_gives_that_many_choices() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let mut body = chat_body("hi");
    body["n"] = json!(3);
    let answer: Value = chat(&http, &emu, &token, &body).await.json().await.unwrap();
    let choices = answer["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (index, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], index);
        assert_eq!(choice["message"]["content"], "[demo-key-id] echo: hi");
    }
    assert_eq!(answer["usage"]["completion_tokens"], 9);
}

async fn streamed(
    http: &reqwest::Client,
    emu: &Emulator,
    token: &str,
    body: &Value,
) -> Vec<String> {
    let response = chat(http, emu, token, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    sse_payloads(&response.text().await.unwrap())
}

#[tokio::test]
async fn a_stream_concatenates_to_the_non_streamed_content_and_ends_with_done() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let content = "several  words,\tsome spacing\nand a newline ";
    let plain: Value = chat(&http, &emu, &token, &chat_body(content))
        .await
        .json()
        .await
        .unwrap();
    let expected = plain["choices"][0]["message"]["content"].as_str().unwrap();

    let mut body = chat_body(content);
    body["stream"] = json!(true);
    let payloads = streamed(&http, &emu, &token, &body).await;
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|payload| serde_json::from_str(payload).unwrap())
        .collect();
    assert!(chunks.len() > 4, "expected one chunk per word");
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["model"], DEMO_MODEL);
        assert_eq!(chunk["choices"][0]["index"], 0);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, expected);
    assert_eq!(emu.stats().chat_streams, 1);
}

#[tokio::test]
async fn a_stream_with_n_streams_every_choice_and_usage_when_asked() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let mut body = chat_body("two words");
    body["stream"] = json!(true);
    body["n"] = json!(2);
    body["stream_options"] = json!({ "include_usage": true });
    let payloads = streamed(&http, &emu, &token, &body).await;
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|payload| serde_json::from_str(payload).unwrap())
        .collect();
    for index in 0..2 {
        let text: String = chunks
            .iter()
            .flat_map(|chunk| chunk["choices"].as_array().unwrap())
            .filter(|choice| choice["index"] == index)
            .filter_map(|choice| choice["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "[demo-key-id] echo: two words");
    }
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 2 + 8);
}

#[tokio::test]
async fn a_stream_arrives_as_separate_chunks() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let mut body = chat_body("a b c d");
    body["stream"] = json!(true);
    let response = chat(&http, &emu, &token, &body).await;
    let mut stream = response.bytes_stream();
    let mut text = Vec::new();
    while let Some(chunk) = stream.next().await {
        text.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        String::from_utf8(text)
            .unwrap()
            .ends_with("data: [DONE]\n\n")
    );
}

#[tokio::test]
async fn refuses_missing_unknown_and_malformed_bearer_tokens_with_401() {
    let emu = start().await;
    let http = http();
    let _issued = demo_token(&http, &emu).await;
    let requests = [
        http.post(chat_url(&emu)),
        http.post(chat_url(&emu))
            .bearer_auth("evo_00000000000000000000000000000000"),
        http.post(chat_url(&emu))
            .header("authorization", "Basic ZGVtbzpkZW1v"),
        http.post(chat_url(&emu)).header("authorization", "Bearer"),
    ];
    for request in requests {
        let response = request.json(&chat_body("hi")).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let error = error_of(response).await;
        assert_eq!(error["code"], "invalid_api_key");
        assert_eq!(error["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn rejects_invalid_bodies_with_400() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let bodies = [
        json!([]),
        json!({ "messages": [{ "role": "user", "content": "hi" }] }),
        json!({ "model": 7, "messages": [{ "role": "user", "content": "hi" }] }),
        json!({ "model": "m" }),
        json!({ "model": "m", "messages": [] }),
        json!({ "model": "m", "messages": "hi" }),
        json!({ "model": "m", "messages": ["hi"] }),
        json!({ "model": "m", "messages": [{ "role": "user" }] }),
        json!({ "model": "m", "messages": [{ "content": "hi" }] }),
        json!({ "model": "m", "messages": [{ "role": "user", "content": 5 }] }),
        json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }], "n": 0 }),
        json!({ "model": "m", "messages": [{ "role": "user", "content": "hi" }], "stream": "yes" }),
    ];
    for body in bodies {
        let response = chat(&http, &emu, &token, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_of(response).await["type"], "invalid_request_error");
    }
    for raw in ["", "not json", "{\"model\": \"m\", \"messa"] {
        let response = http
            .post(chat_url(&emu))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{raw:?}");
        error_of(response).await;
    }
}

#[tokio::test]
async fn refuses_a_body_not_declared_as_json_with_415() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let body = serde_json::to_vec(&chat_body("hi")).unwrap();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = http
            .post(chat_url(&emu))
            .bearer_auth(&token)
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        let error = error_of(response).await;
        assert_eq!(error["message"], "content-type must be application/json");
    }
    let response = http
        .post(chat_url(&emu))
        .bearer_auth(&token)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
