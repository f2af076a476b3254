//! `POST /v1/chat/completions` as JSON, and `GET /v1/models`: answered through the client
//! stack, the request body forwarded as the client sent it.

use evolution_gateway::GatewayConfig;
use evolution_testkit::{KEY, emulator};
use serde_json::json;

use crate::support::{Answer, MODEL, Served, chat_body, client_builder, config, http};

#[tokio::test]
async fn a_chat_request_is_answered_through_the_stack() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config()).await;

    let answer = Answer::of(
        http()
            .post(gateway.at("/v1/chat/completions"))
            .json(&chat_body("hello"))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(
        answer.json()["choices"][0]["message"]["content"],
        format!("[{KEY}] echo: hello")
    );
    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 1);
    assert_eq!(stats.chat_requests_for(KEY), 1);
    assert_eq!(stats.iam_requests, 1);

    // A second call reuses the token.
    let again = http()
        .post(gateway.at("/v1/chat/completions"))
        .json(&chat_body("again"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(emu.stats().iam_requests, 1);
    assert_eq!(emu.stats().chat_requests, 2);
}

#[tokio::test]
async fn unknown_request_fields_reach_upstream_intact() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config()).await;
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
            }
        }],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "x_custom": {"nested": [1, 2.5, "three", null, true]},
        "temperature": 0.25
    });

    let answer = Answer::of(
        http()
            .post(gateway.at("/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(emu.last_chat_request(), Some(body));
}

#[tokio::test]
async fn a_request_without_a_model_gets_the_default_model_and_one_with_a_model_keeps_it() {
    let emu = emulator().await;
    let config = GatewayConfig {
        default_model: Some("the-default-model".to_owned()),
        ..config()
    };
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config).await;

    let without = http()
        .post(gateway.at("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 200);
    assert_eq!(
        emu.last_chat_request(),
        Some(json!({
            "model": "the-default-model",
            "messages": [{"role": "user", "content": "hi"}],
            "n": 1
        }))
    );

    let with = http()
        .post(gateway.at("/v1/chat/completions"))
        .json(&json!({"model": "chosen-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    assert_eq!(
        emu.last_chat_request().unwrap()["model"],
        json!("chosen-model")
    );
}

#[tokio::test]
async fn models_are_forwarded() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config()).await;

    let answer = Answer::of(http().get(gateway.at("/v1/models")).send().await.unwrap()).await;

    assert_eq!(answer.status, 200, "{answer:?}");
    let value = answer.json();
    assert!(
        value["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|model| model["id"] == MODEL),
        "{value}"
    );
    assert_eq!(emu.stats().models_requests, 1);
}
