//! Shared helpers: a client, token fetching and request bodies.

use evolution_emulator::{DEMO_KEY_ID, DEMO_MODEL, DEMO_SECRET, Emulator};
use reqwest::{Client, Response};
use serde_json::{Value, json};

/// A client that never goes through a proxy from the environment.
pub(crate) fn http() -> Client {
    Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

pub(crate) async fn start() -> Emulator {
    Emulator::builder().start().await.expect("emulator starts")
}

pub(crate) async fn iam(http: &Client, emu: &Emulator, body: &Value) -> Response {
    http.post(emu.auth_url())
        .json(body)
        .send()
        .await
        .expect("IAM answers")
}

pub(crate) fn credentials(key_id: &str, secret: &str) -> Value {
    json!({ "keyId": key_id, "secret": secret })
}

/// A fresh token for the key, asserting IAM issues one.
pub(crate) async fn token_for(http: &Client, emu: &Emulator, key_id: &str, secret: &str) -> String {
    let response = iam(http, emu, &credentials(key_id, secret)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("IAM JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

pub(crate) async fn demo_token(http: &Client, emu: &Emulator) -> String {
    token_for(http, emu, DEMO_KEY_ID, DEMO_SECRET).await
}

pub(crate) fn chat_body(content: &str) -> Value {
    json!({
        "model": DEMO_MODEL,
        "messages": [{ "role": "user", "content": content }],
    })
}

pub(crate) fn chat_url(emu: &Emulator) -> String {
    format!("{}/chat/completions", emu.base_url())
}

pub(crate) async fn try_chat(
    http: &Client,
    emu: &Emulator,
    token: &str,
    body: &Value,
) -> reqwest::Result<Response> {
    http.post(chat_url(emu))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
}

pub(crate) async fn chat(http: &Client, emu: &Emulator, token: &str, body: &Value) -> Response {
    try_chat(http, emu, token, body)
        .await
        .expect("chat answers")
}

/// The status of a chat request, or 0 when the connection was dropped without an answer.
pub(crate) async fn chat_status(http: &Client, emu: &Emulator, token: &str) -> u16 {
    match try_chat(http, emu, token, &chat_body("hi")).await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// The OpenAI-style error envelope of a response, checked for shape.
pub(crate) async fn error_of(response: Response) -> Value {
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/json");
    let body: Value = response.json().await.expect("error JSON");
    let error = &body["error"];
    assert!(error["message"].is_string(), "no message in {body}");
    assert!(error["type"].is_string(), "no type in {body}");
    error.clone()
}

/// The `data:` payloads of a server-sent event stream, checking the framing.
pub(crate) fn sse_payloads(text: &str) -> Vec<String> {
    assert!(
        text.ends_with("\n\n"),
        "stream does not end with a blank line"
    );
    text.split_terminator("\n\n")
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .to_owned()
        })
        .collect()
}
