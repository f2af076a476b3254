//! `GET /v1/models`, unknown routes and wrong methods.

use evolution_emulator::{DEMO_MODEL, Emulator};
use serde_json::Value;

use crate::support::{chat_url, demo_token, error_of, http, start};

#[tokio::test]
async fn lists_the_default_model() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let response = http
        .get(format!("{}/models", emu.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], DEMO_MODEL);
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["owned_by"], "evolution-emulator");
    assert!(data[0]["created"].is_u64());
    assert_eq!(emu.stats().models_requests, 1);
}

#[tokio::test]
async fn lists_the_configured_models_in_order() {
    let emu = Emulator::builder()
        .model("m1")
        .model("m2")
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    let body: Value = http
        .get(format!("{}/models", emu.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
}

#[tokio::test]
async fn models_need_a_valid_token() {
    let emu = start().await;
    let http = http();
    for request in [
        http.get(format!("{}/models", emu.base_url())),
        http.get(format!("{}/models", emu.base_url()))
            .bearer_auth("evo_nope"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(error_of(response).await["code"], "invalid_api_key");
    }
}

#[tokio::test]
async fn unknown_routes_answer_404_json() {
    let emu = start().await;
    let http = http();
    for path in [
        "/",
        "/v1",
        "/v1/completions",
        "/v2/chat/completions",
        "/api/v1/auth",
    ] {
        let response = http
            .get(format!("{}{path}", emu.origin()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
        error_of(response).await;
    }
}

#[tokio::test]
async fn wrong_methods_answer_405_json() {
    let emu = start().await;
    let http = http();
    let requests = [
        http.get(chat_url(&emu)),
        http.get(emu.auth_url()),
        http.delete(format!("{}/models", emu.base_url())),
        http.put(chat_url(&emu)),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 405);
        error_of(response).await;
    }
}

#[tokio::test]
async fn urls_use_the_ip_literal() {
    let emu = start().await;
    let port = emu.addr().port();
    assert!(emu.addr().ip().is_loopback());
    assert_eq!(emu.base_url(), format!("http://127.0.0.1:{port}/v1"));
    assert_eq!(
        emu.auth_url(),
        format!("http://127.0.0.1:{port}/api/v1/auth/token")
    );
}
