//! A slow deployment: latency added to one key's chat and embeddings requests, on tokio's
//! clock.

use std::time::Duration;

use evolution_emulator::Emulator;
use serde_json::json;
use tokio::time::Instant;

use crate::support::{chat, chat_body, http, token_for};

const SLOW: Duration = Duration::from_millis(50);

async fn two_keys() -> Emulator {
    Emulator::builder()
        .key("fast", "fast-secret")
        .key("slow", "slow-secret")
        .key_latency("slow", SLOW)
        .start()
        .await
        .unwrap()
}

/// How long one chat call takes, on the paused clock.
async fn chat_takes(emu: &Emulator, token: &str) -> Duration {
    let started = Instant::now();
    let response = chat(&http(), emu, token, &chat_body("hi")).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn only_the_slow_keys_requests_wait() {
    let emu = two_keys().await;
    let client = http();
    let fast = token_for(&client, &emu, "fast", "fast-secret").await;
    let slow = token_for(&client, &emu, "slow", "slow-secret").await;

    assert!(chat_takes(&emu, &fast).await < SLOW);
    let waited = chat_takes(&emu, &slow).await;
    assert!(waited >= SLOW && waited < SLOW * 2, "{waited:?}");

    let started = Instant::now();
    let embeddings = client
        .post(format!("{}/embeddings", emu.base_url()))
        .bearer_auth(&slow)
        .json(&json!({"model": "demo-model", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(embeddings.status(), 200);
    assert!(started.elapsed() >= SLOW);
    // IAM itself is not slowed: the latency is the deployment's, not the key exchange's.
    let started = Instant::now();
    token_for(&client, &emu, "slow", "slow-secret").await;
    assert!(started.elapsed() < SLOW);
}

#[tokio::test(start_paused = true)]
async fn the_latency_is_set_and_removed_at_run_time() {
    let emu = two_keys().await;
    let client = http();
    let fast = token_for(&client, &emu, "fast", "fast-secret").await;

    assert!(emu.set_key_latency("fast", Duration::from_millis(80)));
    assert!(chat_takes(&emu, &fast).await >= Duration::from_millis(80));

    let control = client
        .post(format!("{}/_emulator/control", emu.origin()))
        .json(&json!({"command": "set_key_latency", "key_id": "fast", "ms": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(control.status(), 200);
    assert!(chat_takes(&emu, &fast).await < SLOW);

    assert!(!emu.set_key_latency("nobody", SLOW));
    let unknown = client
        .post(format!("{}/_emulator/control", emu.origin()))
        .json(&json!({"command": "set_key_latency", "key_id": "nobody", "ms": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[test]
fn the_cli_takes_key_latencies() {
    use clap::Parser;
    let args = evolution_emulator::cli::Args::try_parse_from([
        "evolution-emulator",
        "--key",
        "slow:secret",
        "--key-latency",
        "slow:50",
    ])
    .unwrap();
    assert_eq!(args.key_latencies.len(), 1);
    assert_eq!(args.key_latencies[0].id, "slow");
    assert_eq!(args.key_latencies[0].latency, SLOW);
    for bad in ["slow", ":50", "slow:fast"] {
        assert!(
            evolution_emulator::cli::Args::try_parse_from([
                "evolution-emulator",
                "--key-latency",
                bad
            ])
            .is_err(),
            "{bad}"
        );
    }
}
