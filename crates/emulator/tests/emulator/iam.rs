//! `POST /api/v1/auth/token`.

use std::time::Duration;

use evolution_emulator::{DEMO_KEY_ID, DEMO_SECRET, Emulator};
use serde_json::{Value, json};

use crate::support::{credentials, error_of, http, iam, start};

#[tokio::test]
async fn issues_a_token_for_the_demo_key() {
    let emu = start().await;
    let response = iam(&http(), &emu, &credentials(DEMO_KEY_ID, DEMO_SECRET)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("evo_") && token.len() == 36, "{token}");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["refresh_token"], "");
    assert!(!body["id_token"].as_str().unwrap().is_empty());
    assert_eq!(emu.issued_tokens(), [token]);
}

#[tokio::test]
async fn reports_the_configured_ttl_and_issues_distinct_tokens() {
    let emu = Emulator::builder()
        .key("k1", "s1")
        .ttl(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let http = http();
    let first: Value = iam(&http, &emu, &credentials("k1", "s1"))
        .await
        .json()
        .await
        .unwrap();
    let second: Value = iam(&http, &emu, &credentials("k1", "s1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["expires_in"], 60);
    assert_ne!(first["access_token"], second["access_token"]);
    assert_eq!(emu.issued_tokens().len(), 2);
}

#[tokio::test]
async fn configured_keys_replace_the_demo_key() {
    let emu = Emulator::builder()
        .key("k1", "s1")
        .key("k2", "s2")
        .start()
        .await
        .unwrap();
    let http = http();
    assert_eq!(
        iam(&http, &emu, &credentials("k1", "s1")).await.status(),
        200
    );
    assert_eq!(
        iam(&http, &emu, &credentials("k2", "s2")).await.status(),
        200
    );
    let demo = iam(&http, &emu, &credentials(DEMO_KEY_ID, DEMO_SECRET)).await;
    assert_eq!(demo.status(), 401);
}

#[tokio::test]
async fn refuses_unknown_keys_and_wrong_secrets_with_401() {
    let emu = start().await;
    let http = http();
    for body in [
        credentials("nobody", DEMO_SECRET),
        credentials(DEMO_KEY_ID, "wrong"),
    ] {
        let response = iam(&http, &emu, &body).await;
        assert_eq!(response.status(), 401);
        error_of(response).await;
    }
    assert_eq!(emu.stats().tokens_issued, 0);
}

#[tokio::test]
async fn rejects_malformed_requests_with_400() {
    let emu = start().await;
    let http = http();
    let json_bodies = [
        json!([DEMO_KEY_ID, DEMO_SECRET]),
        json!("demo"),
        json!({ "keyId": DEMO_KEY_ID }),
        json!({ "secret": DEMO_SECRET }),
        json!({ "keyId": DEMO_KEY_ID, "secret": DEMO_SECRET, "extra": 1 }),
        json!({ "keyId": 42, "secret": DEMO_SECRET }),
        json!({ "keyId": DEMO_KEY_ID, "secret": null }),
        json!({ "key_id": DEMO_KEY_ID, "secret": DEMO_SECRET }),
    ];
    for body in json_bodies {
        let response = iam(&http, &emu, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_of(response).await["type"], "invalid_request_error");
    }
    let raw_bodies: [(&str, &str); 4] = [
        ("application/json", "not json"),
        ("application/json", ""),
        ("application/json", "{\"keyId\": \"demo-key-id\", \"secr"),
        (
            "text/plain",
            "{\"keyId\": \"demo-key-id\", \"secret\": \"demo-secret\"}",
        ),
    ];
    for (content_type, body) in raw_bodies {
        let response = http
            .post(emu.auth_url())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{content_type} {body:?}");
        error_of(response).await;
    }
    let no_content_type = http
        .post(emu.auth_url())
        .body(credentials(DEMO_KEY_ID, DEMO_SECRET).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(no_content_type.status(), 400);
    assert_eq!(emu.stats().tokens_issued, 0);
}

#[tokio::test]
async fn accepts_a_json_content_type_with_parameters() {
    let emu = start().await;
    let response = http()
        .post(emu.auth_url())
        .header("content-type", "application/json; charset=utf-8")
        .body(credentials(DEMO_KEY_ID, DEMO_SECRET).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
