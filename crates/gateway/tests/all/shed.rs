//! Load shedding: past `max_in_flight` requests (a stream counts until it ends), `/v1/*`
//! answers 503 `overloaded` at once; the probes are never shed; a slot comes back when its
//! stream ends, or when its client goes away.

use std::time::Duration;

use evolution_gateway::GatewayConfig;
use evolution_testkit::emulator;
use serde_json::json;

use crate::support::upstream::{Ended, FIRST};
use crate::support::{Answer, LIMIT, MODEL, Served, Upstream, client_for, config, http};

fn one_slot() -> GatewayConfig {
    GatewayConfig {
        max_in_flight: 1,
        ..config()
    }
}

async fn open_stream(gateway: &Served) -> reqwest::Response {
    let mut response = http()
        .post(gateway.at("/v1/chat/completions"))
        .json(&json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(LIMIT, response.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some(FIRST.as_bytes()));
    response
}

async fn chat(gateway: &Served, request_id: &str) -> Answer {
    Answer::of(
        http()
            .post(gateway.at("/v1/chat/completions"))
            .header("x-request-id", request_id)
            .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_held_stream_fills_the_only_slot_and_the_next_call_is_shed() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let gateway = Served::with(client_for(&emu, &upstream.base_url()), one_slot()).await;

    let mut held = open_stream(&gateway).await;

    let shed = chat(&gateway, "shed-1").await;
    let message = shed.assert_error(503, "overloaded");
    assert!(message.contains("--max-in-flight"), "{message}");
    assert_eq!(shed.header("retry-after"), Some("1"), "{shed:?}");
    assert_eq!(shed.header("x-request-id"), Some("shed-1"));
    assert_eq!(
        upstream.headers().len(),
        1,
        "the shed call never went upstream"
    );

    // The probes are never shed.
    for path in ["/healthz", "/readyz"] {
        let probe = http().get(gateway.at(path)).send().await.unwrap();
        assert_eq!(probe.status(), 200, "{path}");
    }

    // The stream ends: its slot is free again.
    upstream.release();
    while let Some(_chunk) = held.chunk().await.unwrap() {}
    assert_eq!(upstream.next_ended(LIMIT).await, Some(Ended::Complete));
    let after = chat(&gateway, "after-1").await;
    assert_eq!(after.status, 200, "{after:?}");
}

#[tokio::test]
async fn a_client_that_goes_away_gives_its_slot_back() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let gateway = Served::with(client_for(&emu, &upstream.base_url()), one_slot()).await;

    let held = open_stream(&gateway).await;
    chat(&gateway, "shed-2")
        .await
        .assert_error(503, "overloaded");

    drop(held);
    assert_eq!(
        upstream.next_ended(Duration::from_secs(5)).await,
        Some(Ended::Dropped)
    );
    // The next answers are not held (the upstream answers every request).
    upstream.release();
    // The gateway drops its side of the answer with the upstream's; allow it a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let answer = chat(&gateway, "after-2").await;
        if answer.status == 200 {
            break;
        }
        answer.assert_error(503, "overloaded");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
