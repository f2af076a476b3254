//! `POST /v1/chat/completions` as JSON, and `GET /v1/models`: answered through the client
//! stack, the request body forwarded as the client sent it.

use evolution_emulator::{Fault, Route};
use evolution_gateway::GatewayConfig;
use evolution_testkit::{KEY, emulator};
use serde_json::json;

use crate::support::upstream::EMBEDDINGS;
use crate::support::{
    Answer, MODEL, Served, Upstream, chat_body, client_builder, client_for, config, http,
};

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

#[tokio::test]
async fn embeddings_are_forwarded_and_only_known_upstream_headers_come_back() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let gateway = Served::with(client_for(&emu, &upstream.base_url()), config()).await;
    let sent = r#"{"input": ["first", "second"], "encoding_format": "float", "x_extra": 1.50}"#;

    let answer = Answer::of(
        http()
            .post(gateway.at("/v1/embeddings"))
            .header("content-type", "application/json")
            .header("authorization", "Bearer client-key-not-forwarded")
            .header("cookie", "client=not-forwarded")
            .body(sent)
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, EMBEDDINGS);
    assert_eq!(answer.header("x-ratelimit-remaining-requests"), Some("99"));
    assert_eq!(answer.header("set-cookie"), None, "{answer:?}");
    assert_eq!(answer.header("x-upstream-internal"), None, "{answer:?}");

    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v1/embeddings");
    // The model filled in as the first member, every other byte as sent.
    assert_eq!(
        std::str::from_utf8(&received[0].body).unwrap(),
        format!(
            r#"{{"model":"{MODEL}","input": ["first", "second"], "encoding_format": "float", "x_extra": 1.50}}"#
        )
    );
    assert_eq!(received[0].headers["content-type"], "application/json");
    assert!(received[0].headers.get("cookie").is_none());
    assert_ne!(
        received[0].headers["authorization"],
        "Bearer client-key-not-forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_share_one_token() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config()).await;

    let calls = (0..16).map(|n| {
        let request = http()
            .post(gateway.at("/v1/chat/completions"))
            .json(&chat_body(&format!("call {n}")));
        tokio::spawn(async move { request.send().await.unwrap().status() })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }

    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 16);
    assert_eq!(
        stats.iam_requests, 1,
        "one token for every client of the gateway"
    );
}

#[tokio::test]
async fn an_upstream_stream_cut_midway_is_an_error_for_the_client_not_a_clean_end() {
    let emu = emulator().await;
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config()).await;
    emu.push_fault(Route::Chat, Fault::cut_stream(2));

    let response = http()
        .post(gateway.at("/v1/chat/completions"))
        .json(&json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await;

    assert!(body.is_err(), "a cut stream read as complete: {body:?}");
    assert_eq!(emu.stats().connections_dropped, 1);

    // The same for a JSON answer cut in its middle.
    emu.push_fault(Route::Chat, Fault::cut_stream(1));
    let response = http()
        .post(gateway.at("/v1/chat/completions"))
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await;
    assert!(body.is_err(), "a cut answer read as complete: {body:?}");
    assert_eq!(emu.stats().connections_dropped, 2);
}
