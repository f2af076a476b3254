//! Gateway keys: `/v1/*` needs one of them as a bearer token, the probes need none, and no
//! answer ever carries the gateway key, the Evolution secret or an IAM token.

use evolution_emulator::{Fault, Route};
use evolution_testkit::{SECRET, emulator};

use crate::support::{Answer, GATEWAY_KEY, Served, chat_body, client_builder, http, keyed_config};

async fn chat_with(gateway: &Served, authorization: Option<&str>) -> Answer {
    let mut request = http()
        .post(gateway.at("/v1/chat/completions"))
        .json(&chat_body("hi"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    Answer::of(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401_and_never_reaches_upstream() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), keyed_config()).await;

    chat_with(&gateway, None)
        .await
        .assert_error(401, "invalid_api_key");
    for wrong in [
        "Bearer not-the-key".to_owned(),
        format!("Bearer {GATEWAY_KEY}x"),
        format!("Basic {GATEWAY_KEY}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        chat_with(&gateway, Some(&wrong))
            .await
            .assert_error(401, "invalid_api_key");
    }
    // Every /v1 route.
    let models = Answer::of(http().get(gateway.at("/v1/models")).send().await.unwrap()).await;
    models.assert_error(401, "invalid_api_key");

    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 0);
    assert_eq!(stats.models_requests, 0);
    assert_eq!(stats.iam_requests, 0);
}

#[tokio::test]
async fn the_right_key_is_accepted_whatever_the_case_of_bearer() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), keyed_config()).await;

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = chat_with(&gateway, Some(&format!("{scheme} {GATEWAY_KEY}"))).await;
        assert_eq!(answer.status, 200, "{scheme}: {answer:?}");
    }
    assert_eq!(emu.stats().chat_requests, 4);
}

#[tokio::test]
async fn the_probes_need_no_key() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), keyed_config()).await;

    let health = Answer::of(http().get(gateway.at("/healthz")).send().await.unwrap()).await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    let ready = Answer::of(http().get(gateway.at("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, 200, "{ready:?}");
}

#[tokio::test]
async fn no_answer_carries_the_gateway_key_the_secret_or_a_token() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), keyed_config()).await;
    let key = format!("Bearer {GATEWAY_KEY}");

    let mut answers = vec![
        chat_with(&gateway, None).await,
        chat_with(&gateway, Some("Bearer a-wrong-key-not-echoed")).await,
        chat_with(&gateway, Some(&key)).await,
    ];
    let get = |path: &str| http().get(gateway.at(path)).bearer_auth(GATEWAY_KEY);
    for path in ["/v1/models", "/readyz", "/healthz", "/nowhere"] {
        answers.push(Answer::of(get(path).send().await.unwrap()).await);
    }
    // Upstream errors, passed through and the gateway's own.
    emu.push_fault(Route::Chat, Fault::status(400));
    answers.push(chat_with(&gateway, Some(&key)).await);
    for _ in 0..3 {
        emu.push_fault(Route::Chat, Fault::status(500));
    }
    answers.push(chat_with(&gateway, Some(&key)).await);
    // A streamed answer.
    let stream = http()
        .post(gateway.at("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .json(&serde_json::json!({
            "model": "demo-model",
            "stream": true,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .send()
        .await
        .unwrap();
    answers.push(Answer::of(stream).await);
    // The token is revoked: the stack refreshes and resends.
    for token in emu.issued_tokens() {
        emu.revoke_token(&token);
    }
    answers.push(chat_with(&gateway, Some(&key)).await);

    let statuses: Vec<u16> = answers
        .iter()
        .map(|answer| answer.status.as_u16())
        .collect();
    assert_eq!(
        statuses,
        [401, 401, 200, 200, 200, 200, 404, 400, 502, 200, 200]
    );
    let tokens = emu.issued_tokens();
    assert_eq!(tokens.len(), 2, "one token, then one after the revocation");
    for answer in &answers {
        let text = answer.everything();
        assert!(!text.contains(GATEWAY_KEY), "{text}");
        assert!(!text.contains("a-wrong-key-not-echoed"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "{text}");
        }
    }
}
