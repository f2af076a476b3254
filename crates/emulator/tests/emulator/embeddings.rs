//! `POST /v1/embeddings`.

use std::time::Duration;

use evolution_emulator::{
    DEFAULT_EMBEDDING_DIMENSIONS, DEMO_EMBEDDING_MODEL, DEMO_MODEL, Emulator, Fault, Route,
};
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{demo_token, error_of, http, start};

async fn embed(http: &Client, emu: &Emulator, token: &str, body: &Value) -> Response {
    http.post(format!("{}/embeddings", emu.base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("embeddings answer")
}

fn floats(embedding: &Value) -> Vec<f32> {
    embedding
        .as_array()
        .expect("a float array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn norm(vector: &[f32]) -> f64 {
    vector
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[tokio::test]
async fn answers_one_unit_vector_per_input_in_openai_shape() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let body = json!({ "model": DEMO_EMBEDDING_MODEL, "input": ["hello world", "good bye now"] });
    let response = embed(&http, &emu, &token, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], DEMO_EMBEDDING_MODEL);
    assert_eq!(
        answer["usage"],
        json!({ "prompt_tokens": 5, "total_tokens": 5 })
    );
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (index, entry) in data.iter().enumerate() {
        assert_eq!(entry["object"], "embedding");
        assert_eq!(entry["index"], index);
        let vector = floats(&entry["embedding"]);
        assert_eq!(vector.len(), DEFAULT_EMBEDDING_DIMENSIONS);
        assert!((norm(&vector) - 1.0).abs() < 1e-3);
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    let stats = emu.stats();
    assert_eq!(stats.embeddings_requests, 1);
    assert_eq!(stats.embeddings_status(200), 1);
    assert_eq!(stats.embeddings_inputs, 2);
    assert_eq!(stats.chat_requests, 0);
    assert_eq!(emu.last_embeddings_request(), Some(body));
}

#[tokio::test]
async fn the_same_input_gets_the_same_vector() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let one = json!({ "model": "a", "input": "same text" });
    let batch = json!({ "model": "b", "input": ["other", "same text"] });
    let first: Value = embed(&http, &emu, &token, &one).await.json().await.unwrap();
    let second: Value = embed(&http, &emu, &token, &batch)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["data"][0]["embedding"],
        second["data"][1]["embedding"]
    );
}

#[tokio::test]
async fn token_arrays_dimensions_and_base64() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let tokens = json!({ "model": "m", "input": [[1, 2, 3], [4]], "dimensions": 8 });
    let answer: Value = embed(&http, &emu, &token, &tokens)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer["usage"]["prompt_tokens"], 4);
    let floats_8 = floats(&answer["data"][0]["embedding"]);
    assert_eq!(floats_8.len(), 8);

    let single = json!({ "model": "m", "input": [1, 2, 3], "dimensions": 8 });
    let answer: Value = embed(&http, &emu, &token, &single)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 1);
    assert_eq!(floats(&answer["data"][0]["embedding"]), floats_8);

    let base64 = json!({
        "model": "m", "input": [1, 2, 3], "dimensions": 8, "encoding_format": "base64",
    });
    let answer: Value = embed(&http, &emu, &token, &base64)
        .await
        .json()
        .await
        .unwrap();
    let encoded = answer["data"][0]["embedding"].as_str().expect("a string");
    assert_eq!(decode_base64_f32(encoded), floats_8);
}

/// Standard base64 with padding, read back as little-endian `f32`s.
fn decode_base64_f32(text: &str) -> Vec<f32> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut bytes = Vec::new();
    for group in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = group
            .iter()
            .filter(|c| **c != b'=')
            .map(|c| value(*c))
            .collect();
        let n = digits
            .iter()
            .chain(std::iter::repeat(&0))
            .take(4)
            .fold(0u32, |n, d| (n << 6) | u32::from(*d));
        bytes.extend_from_slice(&n.to_be_bytes()[1..digits.len()]);
    }
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[tokio::test]
async fn a_missing_or_empty_input_is_a_400() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    for body in [
        json!({ "model": "m" }),
        json!({ "model": "m", "input": "" }),
        json!({ "model": "m", "input": [] }),
        json!({ "model": "m", "input": ["a", ""] }),
        json!({ "model": "m", "input": [[]] }),
        json!({ "model": "m", "input": 7 }),
        json!({ "model": "m", "input": "a", "encoding_format": "int8" }),
        json!({ "model": "m", "input": "a", "dimensions": 0 }),
        json!({ "input": "a" }),
    ] {
        let response = embed(&http, &emu, &token, &body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            error_of(response).await["code"],
            "invalid_request_error",
            "{body}"
        );
    }
    assert_eq!(emu.stats().embeddings_status(400), 9);
    assert_eq!(emu.stats().embeddings_inputs, 0);
}

#[tokio::test]
async fn a_bad_or_missing_token_is_a_401() {
    let emu = start().await;
    let http = http();
    let url = format!("{}/embeddings", emu.base_url());
    let body = json!({ "model": "m", "input": "a" });
    for request in [
        http.post(&url).json(&body),
        http.post(&url).bearer_auth("evo_nope").json(&body),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(error_of(response).await["code"], "invalid_api_key");
    }
    assert_eq!(emu.stats().embeddings_status(401), 2);
}

#[tokio::test]
async fn a_configured_list_serves_embedding_models_and_refuses_others() {
    let emu = Emulator::builder()
        .model(DEMO_MODEL)
        .embedding_model(DEMO_EMBEDDING_MODEL)
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    let models: Value = http
        .get(format!("{}/models", emu.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = models["data"].as_array().unwrap();
    assert_eq!(data[1]["id"], DEMO_EMBEDDING_MODEL);
    assert_eq!(data[1]["owned_by"], "ai-sage");
    assert_eq!(data[1]["metadata"]["type"], "embedder");
    assert_eq!(data[0]["metadata"]["type"], "llm");

    let ok = json!({ "model": DEMO_EMBEDDING_MODEL, "input": "a" });
    assert_eq!(embed(&http, &emu, &token, &ok).await.status(), 200);
    let unknown = json!({ "model": "nope", "input": "a" });
    let response = embed(&http, &emu, &token, &unknown).await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_of(response).await["code"], "model_not_found");
}

#[tokio::test]
async fn faults_and_latency_target_the_embeddings_route() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let body = json!({ "model": "m", "input": "a" });
    emu.push_fault(
        Route::Embeddings,
        Fault::status(503).with_header("retry-after", "1"),
    );
    let response = embed(&http, &emu, &token, &body).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(embed(&http, &emu, &token, &body).await.status(), 200);

    // Faults queued on chat do not touch embeddings, nor the other way round.
    emu.push_fault(Route::Chat, Fault::status(500));
    assert_eq!(embed(&http, &emu, &token, &body).await.status(), 200);
    assert_eq!(emu.pending_faults(Route::Chat), 1);

    // The control endpoint names the route `embeddings`.
    let command = json!({
        "command": "push_fault", "route": "embeddings",
        "fault": { "kind": "status", "status": 429 },
    });
    let pushed = http
        .post(format!("{}/_emulator/control", emu.origin()))
        .json(&command)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);
    assert_eq!(emu.pending_faults(Route::Embeddings), 1);
    assert_eq!(embed(&http, &emu, &token, &body).await.status(), 429);

    emu.set_latency(Route::Embeddings, Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(embed(&http, &emu, &token, &body).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let stats = emu.stats();
    assert_eq!(stats.embeddings_requests, 5);
    assert_eq!(
        (
            stats.embeddings_status(503),
            stats.embeddings_status(429),
            stats.embeddings_status(200)
        ),
        (1, 1, 3)
    );
    assert_eq!(stats.faults_injected, 2);
}

#[test]
fn the_cli_latency_applies_to_embeddings() {
    use clap::Parser as _;
    let args = evolution_emulator::cli::Args::parse_from([
        "evolution-emulator",
        "--latency-ms",
        "250",
        "--embedding-model",
        DEMO_EMBEDDING_MODEL,
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let emu = args.builder().start().await.unwrap();
        let http = http();
        let token = demo_token(&http, &emu).await;
        let started = Instant::now();
        let body = json!({ "model": DEMO_EMBEDDING_MODEL, "input": "a" });
        assert_eq!(embed(&http, &emu, &token, &body).await.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(250));
    });
}
