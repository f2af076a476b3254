//! An upstream that refuses `stream_options`, as older OpenAI-compatible servers do.

use clap::Parser as _;
use evolution_emulator::{DEMO_KEY_ID, Emulator, Fault, Route};
use reqwest::Client;
use serde_json::{Value, json};

use crate::support::{chat, chat_body, demo_token, http, start};

const REFUSAL: &str = r#"{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error","param":"stream_options","code":null}}"#;

fn with_options(options: Value) -> Value {
    let mut body = chat_body("hi");
    body["stream"] = true.into();
    body["stream_options"] = options;
    body
}

/// The status and body of a chat answer.
async fn answer(http: &Client, emu: &Emulator, token: &str, body: &Value) -> (u16, String) {
    let response = chat(http, emu, token, body).await;
    let status = response.status().as_u16();
    if status == 400 {
        assert_eq!(response.headers()["content-type"], "application/json");
    }
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_refusing_emulator_answers_any_stream_options_400_and_counts_it() {
    let emu = Emulator::builder()
        .refuse_stream_options(true)
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    for options in [
        json!({ "include_usage": true }),
        json!({}),
        Value::Null,
        json!("x"),
    ] {
        let (status, body) = answer(&http, &emu, &token, &with_options(options.clone())).await;
        assert_eq!(status, 400, "{options}");
        assert_eq!(body, REFUSAL, "{options}");
    }
    let mut plain = chat_body("hi");
    plain["stream"] = true.into();
    let (status, body) = answer(&http, &emu, &token, &plain).await;
    assert_eq!(status, 200);
    assert!(body.ends_with("data: [DONE]\n\n"));
    assert_eq!(answer(&http, &emu, &token, &chat_body("hi")).await.0, 200);

    let stats = emu.stats();
    assert_eq!(stats.chat_requests, 6);
    assert_eq!(stats.chat_status(400), 4);
    assert_eq!(stats.chat_status(200), 2);
    assert_eq!(stats.chat_requests_for(DEMO_KEY_ID), 6);
    assert_eq!(stats.chat_streams, 1, "a refused request is not streamed");
    assert_eq!(
        stats.reported_input_tokens, 1,
        "only the non-streamed answer"
    );
}

#[tokio::test]
async fn a_bad_token_is_refused_first_and_a_fault_replaces_the_refusal() {
    let emu = Emulator::builder()
        .refuse_stream_options(true)
        .start()
        .await
        .unwrap();
    let http = http();
    let body = with_options(json!({ "include_usage": true }));
    assert_eq!(answer(&http, &emu, "evo_bogus", &body).await.0, 401);
    let token = demo_token(&http, &emu).await;
    emu.push_fault(Route::Chat, Fault::status(503));
    assert_eq!(answer(&http, &emu, &token, &body).await.0, 503);
    assert_eq!(answer(&http, &emu, &token, &body).await.0, 400);
}

#[tokio::test]
async fn by_default_stream_options_are_accepted_and_checked() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let (status, body) = answer(
        &http,
        &emu,
        &token,
        &with_options(json!({ "include_usage": true })),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""usage":{"prompt_tokens":1"#), "{body}");
    let (status, body) = answer(&http, &emu, &token, &with_options(Value::Null)).await;
    assert_eq!(status, 200);
    assert!(!body.contains("usage"), "{body}");
    let (status, body) = answer(&http, &emu, &token, &with_options(json!("x"))).await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_ne!(body, REFUSAL);
}

#[tokio::test]
async fn the_setter_the_control_endpoint_and_the_cli_flag_switch_it() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let body = with_options(json!({ "include_usage": true }));
    emu.set_refuse_stream_options(true);
    assert_eq!(answer(&http, &emu, &token, &body).await.0, 400);
    emu.set_refuse_stream_options(false);
    assert_eq!(answer(&http, &emu, &token, &body).await.0, 200);

    for (refuse, status) in [(true, 400), (false, 200)] {
        let command = json!({ "command": "set_refuse_stream_options", "refuse": refuse });
        let response = http
            .post(format!("{}/_emulator/control", emu.origin()))
            .json(&command)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(answer(&http, &emu, &token, &body).await.0, status);
    }

    let args = evolution_emulator::cli::Args::parse_from([
        "evolution-emulator",
        "--refuse-stream-options",
    ]);
    let refusing = args.builder().start().await.unwrap();
    let token = demo_token(&http, &refusing).await;
    assert_eq!(
        answer(&http, &refusing, &token, &body).await,
        (400, REFUSAL.to_owned())
    );
    let args = evolution_emulator::cli::Args::parse_from(["evolution-emulator"]);
    assert!(!args.refuse_stream_options);
}
