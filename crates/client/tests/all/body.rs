use evolution_client::ChatRequest;
use evolution_emulator::DEMO_MODEL;
use serde_json::json;

use crate::{builder, client, emulator};

#[tokio::test]
async fn the_reference_defaults_are_sent() {
    let emu = emulator().await;
    client(&emu).invoke("Привет!").await.unwrap();
    assert_eq!(
        emu.last_chat_request().unwrap(),
        json!({
            "model": DEMO_MODEL,
            "messages": [{"role": "user", "content": "Привет!"}],
            "max_tokens": 512,
            "temperature": 1.0,
            "top_p": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "n": 1,
            "stream": false,
        })
    );
}

#[tokio::test]
async fn configured_parameters_and_per_call_overrides_are_sent() {
    let emu = emulator().await;
    let llm = builder(&emu)
        .max_tokens(100)
        .temperature(0.5)
        .top_p(0.75)
        .frequency_penalty(0.25)
        .presence_penalty(-0.5)
        .stop(["END"])
        .n(2)
        .build()
        .unwrap();
    llm.chat(ChatRequest::new().system("sys").user("hi"))
        .await
        .unwrap();
    assert_eq!(
        emu.last_chat_request().unwrap(),
        json!({
            "model": DEMO_MODEL,
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}],
            "max_tokens": 100,
            "temperature": 0.5,
            "top_p": 0.75,
            "frequency_penalty": 0.25,
            "presence_penalty": -0.5,
            "stop": ["END"],
            "n": 2,
            "stream": false,
        })
    );

    llm.stream(
        ChatRequest::from_prompt("x")
            .model("other")
            .temperature(0.0)
            .max_tokens(7),
    )
    .await
    .unwrap()
    .collect_text()
    .await
    .unwrap();
    let sent = emu.last_chat_request().unwrap();
    assert_eq!(sent["model"], "other");
    assert_eq!(sent["temperature"], 0.0);
    assert_eq!(sent["max_tokens"], 7);
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["n"], 2);
}
