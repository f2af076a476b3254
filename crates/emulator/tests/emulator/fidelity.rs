//! What the real Foundation Models API sends that a minimal OpenAI fake would not: IAM's extra
//! fields, model metadata, reasoning models, array-of-parts contents, `model_not_found`, and a
//! stream that fails after its `200` head.

use evolution_emulator::{Emulator, Fault, Route};
use serde_json::{Value, json};

use crate::support::{chat, credentials, demo_token, error_of, http, iam, sse_payloads, start};

const GPT_OSS: &str = "openai/gpt-oss-120b";
const GLM: &str = "zai-org/GLM-4.7";

fn body_for(model: &str, content: Value) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": content }] })
}

/// The chunks of a streamed answer (without `[DONE]`), asserting it ends with `[DONE]`.
async fn stream_chunks(emu: &Emulator, token: &str, mut body: Value) -> Vec<Value> {
    body["stream"] = json!(true);
    let response = chat(&http(), emu, token, &body).await;
    assert_eq!(response.status(), 200);
    let payloads = sse_payloads(&response.text().await.unwrap());
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    payloads[..payloads.len() - 1]
        .iter()
        .map(|payload| serde_json::from_str(payload).unwrap())
        .collect()
}

fn delta_text(chunks: &[Value], field: &str) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"][field].as_str())
        .collect()
}

#[tokio::test]
async fn the_iam_answer_carries_cloud_rus_extra_fields() {
    let emu = start().await;
    let response = iam(
        &http(),
        &emu,
        &credentials(
            evolution_emulator::DEMO_KEY_ID,
            evolution_emulator::DEMO_SECRET,
        ),
    )
    .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(!body["id_token"].as_str().unwrap().is_empty());
    assert!(!body["scope"].as_str().unwrap().is_empty(), "{body}");
    assert_eq!(body["not-before-policy"], 0, "{body}");
    assert_eq!(body["expires_in"], 3600);
}

#[tokio::test]
async fn model_entries_carry_owned_by_and_metadata() {
    let emu = Emulator::builder()
        .model(GPT_OSS)
        .reasoning_model(GLM)
        .model("plain")
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
    let data = body["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [GPT_OSS, GLM, "plain"]);
    // The organisation before the slash owns the model.
    assert_eq!(data[0]["owned_by"], "openai");
    assert_eq!(data[1]["owned_by"], "zai-org");
    assert_eq!(data[2]["owned_by"], "evolution-emulator");
    for model in data {
        let metadata = &model["metadata"];
        assert_eq!(metadata["type"], "llm", "{model}");
        for flag in ["is_billable", "function_calling", "structure_output"] {
            assert!(metadata[flag].is_boolean(), "{flag} in {model}");
        }
    }
    assert_eq!(data[1]["metadata"]["reasoning"], true);
    assert_eq!(data[0]["metadata"]["reasoning"], false);
}

#[tokio::test]
async fn a_configured_model_list_refuses_other_models_with_404() {
    let emu = Emulator::builder().model(GPT_OSS).start().await.unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;

    let answer: Value = chat(&http, &emu, &token, &body_for(GPT_OSS, json!("hi")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["model"], GPT_OSS, "the slash survives");

    let response = chat(&http, &emu, &token, &body_for("openai/gpt-5", json!("hi"))).await;
    assert_eq!(response.status(), 404);
    let error = error_of(response).await;
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"].as_str().unwrap().contains("openai/gpt-5"),
        "{error}"
    );
    assert_eq!(emu.stats().chat_status(404), 1);
}

#[tokio::test]
async fn without_a_model_list_any_model_is_served() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let response = chat(&http, &emu, &token, &body_for("any/model-id", json!("hi"))).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_reasoning_model_answers_reasoning_content() {
    let emu = Emulator::builder()
        .model("plain")
        .reasoning_model(GPT_OSS)
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;

    let answer: Value = chat(&http, &emu, &token, &body_for(GPT_OSS, json!("why?")))
        .await
        .json()
        .await
        .unwrap();
    let message = &answer["choices"][0]["message"];
    assert_eq!(message["content"], "[demo-key-id] echo: why?");
    let reasoning = message["reasoning_content"].as_str().unwrap();
    assert!(reasoning.contains("why?"), "{reasoning}");

    let chunks = stream_chunks(&emu, &token, body_for(GPT_OSS, json!("why?"))).await;
    assert_eq!(delta_text(&chunks, "reasoning_content"), reasoning);
    assert_eq!(delta_text(&chunks, "content"), "[demo-key-id] echo: why?");

    // Other models answer without it.
    let plain: Value = chat(&http, &emu, &token, &body_for("plain", json!("why?")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        plain["choices"][0]["message"].get("reasoning_content"),
        None
    );
    let chunks = stream_chunks(&emu, &token, body_for("plain", json!("why?"))).await;
    assert_eq!(delta_text(&chunks, "reasoning_content"), "");
}

#[tokio::test]
async fn array_of_parts_contents_are_read_as_their_text_parts() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let parts = json!([
        { "type": "text", "text": "first" },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } },
        { "type": "text", "text": "second" },
    ]);
    let answer: Value = chat(&http, &emu, &token, &body_for("m", parts))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "[demo-key-id] echo: first\nsecond"
    );
    // An assistant turn without content (a tool call) is accepted too.
    let body = json!({ "model": "m", "messages": [
        { "role": "assistant", "content": null },
        { "role": "user", "content": [{ "type": "text", "text": "again" }] },
    ]});
    let answer: Value = chat(&http, &emu, &token, &body).await.json().await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "[demo-key-id] echo: again"
    );

    for content in [
        json!([{ "text": "no type" }]),
        json!([{ "type": "text" }]),
        json!([{ "type": "text", "text": 5 }]),
        json!(["bare string"]),
        json!({ "type": "text", "text": "not an array" }),
    ] {
        let response = chat(&http, &emu, &token, &body_for("m", content.clone())).await;
        assert_eq!(response.status(), 400, "{content}");
        assert_eq!(error_of(response).await["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn a_stream_error_fault_fails_the_stream_after_its_head() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let error =
        json!({ "error": { "message": "model crashed", "type": "server_error", "code": 500 } });
    emu.push_fault(Route::Chat, Fault::stream_error_after(2, error.clone()));
    let mut body = body_for("m", json!("one two three"));
    body["stream"] = json!(true);
    let response = chat(&http, &emu, &token, &body).await;
    assert_eq!(response.status(), 200);
    let payloads = sse_payloads(&response.text().await.unwrap());
    assert_eq!(payloads.len(), 4, "{payloads:?}");
    let first: Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let sent: Value = serde_json::from_str(&payloads[2]).unwrap();
    assert_eq!(sent, error);
    assert_eq!(payloads[3], "[DONE]");
    assert_eq!(emu.stats().faults_injected, 1);

    // A non-streamed answer is not affected.
    emu.push_fault(Route::Chat, Fault::stream_error_after(0, error));
    let answer: Value = chat(&http, &emu, &token, &body_for("m", json!("hi")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "[demo-key-id] echo: hi"
    );
}

#[tokio::test]
async fn a_stream_error_fault_can_be_pushed_over_the_control_endpoint() {
    let emu = start().await;
    let http = http();
    let response = http
        .post(format!("{}/_emulator/control", emu.origin()))
        .json(&json!({
            "command": "push_fault",
            "route": "chat",
            "fault": { "kind": "stream_error", "after": 1, "body": { "error": { "message": "boom" } } },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(emu.pending_faults(Route::Chat), 1);
}
