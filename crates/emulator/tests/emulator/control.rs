//! `POST /_emulator/control`.

use evolution_emulator::{DEMO_KEY_ID, DEMO_SECRET, Emulator, Route};
use reqwest::Client;
use serde_json::{Value, json};

use crate::support::{chat_status, credentials, demo_token, error_of, http, iam, start, token_for};

async fn control(http: &Client, emu: &Emulator, command: Value) -> reqwest::Response {
    http.post(format!("{}/_emulator/control", emu.origin()))
        .json(&command)
        .send()
        .await
        .unwrap()
}

async fn ok(http: &Client, emu: &Emulator, command: Value) -> Value {
    let response = control(http, emu, command.clone()).await;
    assert_eq!(response.status(), 200, "{command}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ok"], true);
    body
}

#[tokio::test]
async fn pushes_faults_of_every_kind() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let faults = [
        json!({ "kind": "status", "status": 429, "headers": { "retry-after": "1" } }),
        json!({ "kind": "status", "status": 503, "message": "maintenance", "delay_ms": 1 }),
        json!({ "kind": "delay", "delay_ms": 1 }),
        json!({ "kind": "raw_body", "status": 200, "content_type": "application/json", "body": "{\"choi" }),
        json!({ "kind": "malformed", "malformed": "missing_field" }),
        json!({ "kind": "patch_body", "body": { "model": "patched" } }),
        json!({ "kind": "iam_body", "body": { "odd": true } }),
        json!({ "kind": "close" }),
        json!({ "kind": "cut_stream", "chunks": 1 }),
    ];
    for fault in faults {
        ok(
            &http,
            &emu,
            json!({ "command": "push_fault", "route": "chat", "fault": fault }),
        )
        .await;
    }
    assert_eq!(emu.pending_faults(Route::Chat), 9);
    let throttled =
        crate::support::chat(&http, &emu, &token, &crate::support::chat_body("x")).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(chat_status(&http, &emu, &token).await, 503);
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    ok(
        &http,
        &emu,
        json!({ "command": "clear_faults", "route": "chat" }),
    )
    .await;
    assert_eq!(emu.pending_faults(Route::Chat), 0);
}

#[tokio::test]
async fn steers_keys_tokens_ttl_latency_probability_and_stats() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    ok(&http, &emu, json!({ "command": "set_ttl", "secs": 40 })).await;
    let answer: Value = iam(&http, &emu, &credentials("k1", "s1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["expires_in"], 40);
    let token = answer["access_token"].as_str().unwrap().to_owned();

    ok(
        &http,
        &emu,
        json!({ "command": "revoke_token", "token": token }),
    )
    .await;
    assert_eq!(chat_status(&http, &emu, &token).await, 401);

    let token = token_for(&http, &emu, "k1", "s1").await;
    let revoked = ok(
        &http,
        &emu,
        json!({ "command": "revoke_key", "key_id": "k1" }),
    )
    .await;
    assert_eq!(revoked["revoked"], 1);
    assert_eq!(chat_status(&http, &emu, &token).await, 401);

    ok(
        &http,
        &emu,
        json!({ "command": "disable_key", "key_id": "k1" }),
    )
    .await;
    assert_eq!(
        iam(&http, &emu, &credentials("k1", "s1")).await.status(),
        401
    );
    ok(
        &http,
        &emu,
        json!({ "command": "enable_key", "key_id": "k1" }),
    )
    .await;
    let token = token_for(&http, &emu, "k1", "s1").await;

    ok(
        &http,
        &emu,
        json!({ "command": "add_key", "key_id": "k2", "secret": "s2" }),
    )
    .await;
    token_for(&http, &emu, "k2", "s2").await;

    ok(
        &http,
        &emu,
        json!({ "command": "set_latency", "route": "models", "ms": 0 }),
    )
    .await;
    ok(
        &http,
        &emu,
        json!({ "command": "set_fault_probability", "probability": 1.0, "seed": 3, "routes": ["chat"] }),
    )
    .await;
    assert_ne!(chat_status(&http, &emu, &token).await, 200);
    ok(
        &http,
        &emu,
        json!({ "command": "set_fault_probability", "probability": 0.0, "seed": 3, "routes": [] }),
    )
    .await;
    assert_eq!(chat_status(&http, &emu, &token).await, 200);

    ok(&http, &emu, json!({ "command": "reset_stats" })).await;
    assert_eq!(emu.stats().iam_requests, 0);
}

#[tokio::test]
async fn refuses_bad_commands_and_unknown_keys() {
    let emu = start().await;
    let http = http();
    let bad = [
        json!({ "command": "explode" }),
        json!({ "command": "set_ttl" }),
        json!({ "command": "push_fault", "route": "nowhere", "fault": { "kind": "close" } }),
        json!({ "command": "push_fault", "route": "chat", "fault": { "kind": "status", "status": 42 } }),
        json!({ "command": "push_fault", "route": "chat", "fault": { "kind": "teleport" } }),
        json!({ "command": "push_fault", "route": "chat", "fault": { "kind": "close", "headers": { "bad header": "x" } } }),
        json!([]),
    ];
    for command in bad {
        let response = control(&http, &emu, command.clone()).await;
        assert_eq!(response.status(), 400, "{command}");
        error_of(response).await;
    }
    for command in [
        json!({ "command": "disable_key", "key_id": "nobody" }),
        json!({ "command": "revoke_token", "token": "evo_unknown" }),
    ] {
        assert_eq!(control(&http, &emu, command).await.status(), 404);
    }
    assert_eq!(emu.pending_faults(Route::Chat), 0);
    assert_eq!(
        iam(&http, &emu, &credentials(DEMO_KEY_ID, DEMO_SECRET))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn static_api_keys_are_bearer_tokens_without_iam() {
    let emu = Emulator::builder()
        .api_key("built-in-api-key")
        .start()
        .await
        .unwrap();
    let http = http();
    assert_eq!(chat_status(&http, &emu, "built-in-api-key").await, 200);
    assert_eq!(chat_status(&http, &emu, "added-api-key").await, 401);
    ok(
        &http,
        &emu,
        json!({ "command": "add_api_key", "api_key": "added-api-key" }),
    )
    .await;
    assert_eq!(chat_status(&http, &emu, "added-api-key").await, 200);
    let stats = emu.stats();
    assert_eq!(stats.api_key_requests, 2);
    assert_eq!(stats.iam_requests, 0);
    assert_eq!(stats.tokens_issued, 0);
    assert!(emu.issued_tokens().is_empty());
    // Counted by the label a client names the key by, never by the key.
    assert_eq!(stats.chat_by_key.len(), 2, "{:?}", stats.chat_by_key);
    assert!(
        stats
            .chat_by_key
            .keys()
            .all(|id| id.starts_with("api-key-"))
    );

    // IAM does not exchange an API key's label for a token.
    let label = stats.chat_by_key.keys().next().unwrap().clone();
    assert_eq!(
        iam(&http, &emu, &credentials(&label, "")).await.status(),
        401
    );

    ok(
        &http,
        &emu,
        json!({ "command": "revoke_token", "token": "added-api-key" }),
    )
    .await;
    assert_eq!(chat_status(&http, &emu, "added-api-key").await, 401);
    assert_eq!(chat_status(&http, &emu, "built-in-api-key").await, 200);
}
