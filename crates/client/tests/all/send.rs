//! `EvolutionInference::send`: a request the caller built, through the client's own path.

use bytes::Bytes;
use evolution_client::{ChatResponse, EvolutionInference};
use evolution_emulator::DEMO_MODEL;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use secrecy::ExposeSecret;

use crate::{KEY, client, emulator};

/// A chat request for `prompt`, as a caller that builds its own would write it.
fn chat(llm: &EvolutionInference, prompt: &str, model: &str) -> Request<Bytes> {
    let body = serde_json::json!({
        "model": model,
        "messages": [{ "role": "user", "content": prompt }],
    });
    Request::post(format!("{}/chat/completions", llm.base_url()))
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

/// (total, successes) in the client's stats.
fn counts(llm: &EvolutionInference) -> (u64, u64) {
    let stats = llm.stats();
    (stats.total_requests, stats.successes)
}

#[tokio::test]
async fn a_request_gets_its_answer_and_is_counted_when_its_body_ends() {
    let emu = emulator().await;
    let llm = client(&emu);
    let response = llm.send(chat(&llm, "hello", DEMO_MODEL)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counts(&llm), (0, 0), "not counted before its body is read");

    let body = response.into_body().collect().await.unwrap().to_bytes();
    let answer: ChatResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer.text(), Some(&*format!("[{KEY}] echo: hello")));
    assert_eq!(counts(&llm), (1, 1));
    let stats = emu.stats();
    assert_eq!((stats.iam_requests, stats.chat_status(200)), (1, 1));
}

#[tokio::test]
async fn a_body_dropped_unread_is_counted_as_no_success() {
    let emu = emulator().await;
    let llm = client(&emu);
    let response = llm.send(chat(&llm, "unread", DEMO_MODEL)).await.unwrap();
    drop(response);
    assert_eq!(counts(&llm), (1, 0), "cancelled");
}

#[tokio::test]
async fn a_revoked_token_is_resent_invisibly() {
    let emu = emulator().await;
    let llm = client(&emu);
    let token = llm.token_manager().get_token().await.unwrap();
    assert!(emu.revoke_token(token.secret().expose_secret()));

    let response = llm.send(chat(&llm, "again", DEMO_MODEL)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 2, "one extra IAM request");
    assert_eq!((stats.chat_status(401), stats.chat_status(200)), (1, 1));
    assert_eq!(counts(&llm), (1, 1));
    assert_eq!(llm.stats().auth_errors, 0, "the resend is invisible");
}

#[tokio::test]
async fn an_error_status_comes_back_as_a_response() {
    let emu = evolution_emulator::Emulator::builder()
        .key(crate::KEY, crate::SECRET)
        .model(DEMO_MODEL)
        .start()
        .await
        .unwrap();
    let llm = client(&emu);
    let response = llm.send(chat(&llm, "hi", "no-such-model")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("model_not_found"),
        "{body:?}"
    );
    // Counted at its head, as a failure.
    assert_eq!(counts(&llm), (1, 0));
}
