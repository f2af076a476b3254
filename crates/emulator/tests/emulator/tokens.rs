//! Token lifetime, revocation and keys disabled at run time.

use std::time::Duration;

use evolution_emulator::Emulator;
use serde_json::Value;

use crate::support::{chat, chat_body, chat_status, credentials, http, iam, token_for};

#[tokio::test(start_paused = true)]
async fn a_token_expires_after_its_ttl_on_the_tokio_clock() {
    let emu = Emulator::builder()
        .key("k1", "s1")
        .ttl(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let http = http();
    let token = token_for(&http, &emu, "k1", "s1").await;
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    tokio::time::advance(Duration::from_secs(2)).await;
    let response = chat(&http, &emu, &token, &chat_body("late")).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    // A new token works again.
    let fresh = token_for(&http, &emu, "k1", "s1").await;
    assert_eq!(chat_status(&http, &emu, &fresh).await, 200);
}

#[tokio::test(start_paused = true)]
async fn a_new_ttl_applies_to_tokens_issued_afterwards() {
    let emu = Emulator::builder()
        .key("k1", "s1")
        .ttl(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let http = http();
    let long = token_for(&http, &emu, "k1", "s1").await;
    emu.set_ttl(Duration::from_secs(10));
    assert_eq!(emu.ttl(), Duration::from_secs(10));
    let answer: Value = iam(&http, &emu, &credentials("k1", "s1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["expires_in"], 10);
    let short = answer["access_token"].as_str().unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(chat_status(&http, &emu, short).await, 401);
    assert_eq!(chat_status(&http, &emu, &long).await, 200);
}

#[tokio::test]
async fn a_revoked_token_answers_401_and_others_keep_working() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    let revoked = token_for(&http, &emu, "k1", "s1").await;
    let kept = token_for(&http, &emu, "k1", "s1").await;
    assert!(emu.revoke_token(&revoked));
    assert!(!emu.revoke_token("evo_never_issued"));
    assert_eq!(chat_status(&http, &emu, &revoked).await, 401);
    assert_eq!(chat_status(&http, &emu, &kept).await, 200);
}

#[tokio::test]
async fn revoking_a_key_revokes_its_tokens_only() {
    let emu = Emulator::builder()
        .key("k1", "s1")
        .key("k2", "s2")
        .start()
        .await
        .unwrap();
    let http = http();
    let a = token_for(&http, &emu, "k1", "s1").await;
    let b = token_for(&http, &emu, "k1", "s1").await;
    let other = token_for(&http, &emu, "k2", "s2").await;
    assert_eq!(emu.revoke_key("k1"), 2);
    assert_eq!(chat_status(&http, &emu, &a).await, 401);
    assert_eq!(chat_status(&http, &emu, &b).await, 401);
    assert_eq!(chat_status(&http, &emu, &other).await, 200);
    // The key itself still works at IAM.
    let fresh = token_for(&http, &emu, "k1", "s1").await;
    assert_eq!(chat_status(&http, &emu, &fresh).await, 200);
}

#[tokio::test]
async fn a_disabled_key_is_refused_at_iam_until_enabled() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    let token = token_for(&http, &emu, "k1", "s1").await;
    assert!(emu.disable_key("k1"));
    assert!(!emu.disable_key("nobody"));
    assert_eq!(
        iam(&http, &emu, &credentials("k1", "s1")).await.status(),
        401
    );
    // Tokens already issued live on until they expire or are revoked.
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    assert!(emu.enable_key("k1"));
    assert_eq!(
        iam(&http, &emu, &credentials("k1", "s1")).await.status(),
        200
    );
}

#[tokio::test]
async fn keys_can_be_added_and_rotated_at_run_time() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    emu.add_key("k2", "s2");
    assert_eq!(
        iam(&http, &emu, &credentials("k2", "s2")).await.status(),
        200
    );
    emu.add_key("k1", "rotated");
    assert_eq!(
        iam(&http, &emu, &credentials("k1", "s1")).await.status(),
        401
    );
    assert_eq!(
        iam(&http, &emu, &credentials("k1", "rotated"))
            .await
            .status(),
        200
    );
}
