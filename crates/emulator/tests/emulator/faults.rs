//! Scripted and random faults.

use std::time::Duration;

use evolution_emulator::{DEMO_KEY_ID, DEMO_SECRET, Emulator, Fault, Malformed, Route};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{
    chat, chat_body, chat_status, credentials, demo_token, error_of, http, iam, start, try_chat,
};

#[tokio::test]
async fn a_status_fault_answers_once_with_its_headers() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(
        Route::Chat,
        Fault::status(429).with_header("retry-after", "1"),
    );
    emu.push_fault(
        Route::Chat,
        Fault::status(503)
            .with_header("retry-after-ms", "200")
            .with_message("maintenance"),
    );
    let throttled = chat(&http, &emu, &token, &chat_body("hi")).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(error_of(throttled).await["type"], "rate_limit_error");
    let unavailable = chat(&http, &emu, &token, &chat_body("hi")).await;
    assert_eq!(unavailable.status(), 503);
    assert_eq!(unavailable.headers()["retry-after-ms"], "200");
    assert_eq!(error_of(unavailable).await["message"], "maintenance");
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    assert_eq!(emu.stats().faults_injected, 2);
}

#[tokio::test]
async fn faults_are_consumed_in_order_per_route() {
    let emu = start().await;
    let http = http();
    emu.push_fault(Route::Iam, Fault::status(500));
    emu.push_fault(Route::Iam, Fault::status(502));
    emu.push_fault(Route::Chat, Fault::status(504));
    assert_eq!(emu.pending_faults(Route::Iam), 2);
    let body = credentials(DEMO_KEY_ID, DEMO_SECRET);
    assert_eq!(iam(&http, &emu, &body).await.status(), 500);
    assert_eq!(iam(&http, &emu, &body).await.status(), 502);
    let token = demo_token(&http, &emu).await;
    assert_eq!(chat_status(&http, &emu, &token).await, 504);
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    emu.push_fault(Route::Models, Fault::status(500));
    emu.clear_faults(Route::Models);
    assert_eq!(emu.pending_faults(Route::Models), 0);
}

#[tokio::test]
async fn faults_apply_before_authentication() {
    let emu = start().await;
    emu.push_fault(Route::Chat, Fault::status(503));
    assert_eq!(chat_status(&http(), &emu, "evo_not_a_token").await, 503);
}

#[tokio::test(start_paused = true)]
async fn a_delay_fault_waits_on_the_tokio_clock_then_answers_normally() {
    let emu = start().await;
    let http = http();
    emu.push_fault(Route::Iam, Fault::delay(Duration::from_millis(500)));
    let started = Instant::now();
    let response = iam(&http, &emu, &credentials(DEMO_KEY_ID, DEMO_SECRET)).await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(emu.stats().tokens_issued, 1);
}

#[tokio::test(start_paused = true)]
async fn a_status_fault_can_be_delayed() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(
        Route::Chat,
        Fault::status(504).with_delay(Duration::from_secs(30)),
    );
    let started = Instant::now();
    assert_eq!(chat_status(&http, &emu, &token).await, 504);
    assert!(started.elapsed() >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn added_latency_applies_to_every_request_of_its_route() {
    let emu = Emulator::builder()
        .latency(Route::Iam, Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let http = http();
    for _ in 0..2 {
        let started = Instant::now();
        let _token = demo_token(&http, &emu).await;
        assert!(started.elapsed() >= Duration::from_millis(500));
    }
    emu.set_latency(Route::Iam, Duration::ZERO);
    let started = Instant::now();
    let token = demo_token(&http, &emu).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    emu.set_latency(Route::Chat, Duration::from_secs(2));
    let started = Instant::now();
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

async fn malformed_body(emu: &Emulator, route: Route, kind: Malformed) -> String {
    let http = http();
    let token = demo_token(&http, emu).await;
    emu.push_fault(route, Fault::malformed(kind));
    let response = match route {
        Route::Iam => iam(&http, emu, &credentials(DEMO_KEY_ID, DEMO_SECRET)).await,
        Route::Chat => chat(&http, emu, &token, &chat_body("hi")).await,
        Route::Models => http
            .get(format!("{}/models", emu.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        Route::Embeddings => http
            .post(format!("{}/embeddings", emu.base_url()))
            .bearer_auth(&token)
            .json(&json!({ "model": "m", "input": "hi" }))
            .send()
            .await
            .unwrap(),
    };
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn malformed_faults_answer_200_with_bodies_clients_cannot_use() {
    let emu = start().await;
    for route in Route::ALL {
        let not_json = malformed_body(&emu, route, Malformed::NotJson).await;
        assert!(serde_json::from_str::<Value>(&not_json).is_err());
        assert_eq!(malformed_body(&emu, route, Malformed::Empty).await, "");
        let truncated = malformed_body(&emu, route, Malformed::Truncated).await;
        assert!(!truncated.is_empty());
        assert!(serde_json::from_str::<Value>(&truncated).is_err());
        let missing = malformed_body(&emu, route, Malformed::MissingField).await;
        let missing: Value = serde_json::from_str(&missing).unwrap();
        let field = match route {
            Route::Iam => "access_token",
            Route::Chat => "choices",
            Route::Models | Route::Embeddings => "data",
        };
        assert!(
            missing.is_object() && missing.get(field).is_none(),
            "{route}: {missing}"
        );
    }
}

#[tokio::test]
async fn an_iam_body_fault_answers_that_json_verbatim() {
    let emu = start().await;
    let http = http();
    let odd = json!({ "access_token": "x", "expires_in": "soon" });
    emu.push_fault(Route::Iam, Fault::iam_body(odd.clone()));
    let response = iam(&http, &emu, &credentials(DEMO_KEY_ID, DEMO_SECRET)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), odd);
    assert_eq!(emu.stats().tokens_issued, 0);
}

#[tokio::test]
async fn a_patch_fault_reports_odd_expires_in_for_a_working_token() {
    let emu = start().await;
    let http = http();
    let cases = [
        json!(10),
        json!(0),
        json!(-5),
        json!("3600"),
        json!(1_000_000_000_000u64),
    ];
    for expires_in in cases {
        emu.push_fault(
            Route::Iam,
            Fault::patch_body(json!({ "expires_in": expires_in })),
        );
        let body: Value = iam(&http, &emu, &credentials(DEMO_KEY_ID, DEMO_SECRET))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["expires_in"], expires_in);
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(chat_status(&http, &emu, token).await, 200);
    }
    emu.push_fault(Route::Iam, Fault::patch_body(json!({ "expires_in": null })));
    let body: Value = iam(&http, &emu, &credentials(DEMO_KEY_ID, DEMO_SECRET))
        .await
        .json()
        .await
        .unwrap();
    assert!(body.get("expires_in").is_none());
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn a_raw_body_fault_answers_exactly_those_bytes() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(200, "application/json", "{\"choi"),
    );
    emu.push_fault(
        Route::Chat,
        Fault::raw_body(502, "text/html", "<h1>bad gateway</h1>"),
    );
    let truncated = chat(&http, &emu, &token, &chat_body("hi")).await;
    assert_eq!(truncated.status(), 200);
    assert_eq!(truncated.headers()["content-type"], "application/json");
    assert_eq!(truncated.text().await.unwrap(), "{\"choi");
    let html = chat(&http, &emu, &token, &chat_body("hi")).await;
    assert_eq!(html.status(), 502);
    assert_eq!(html.headers()["content-type"], "text/html");
    assert_eq!(html.text().await.unwrap(), "<h1>bad gateway</h1>");
}

#[tokio::test]
async fn a_close_fault_drops_the_connection_without_an_answer() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(Route::Chat, Fault::close());
    let error = try_chat(&http, &emu, &token, &chat_body("hi"))
        .await
        .unwrap_err();
    assert!(error.status().is_none());
    emu.push_fault(Route::Iam, Fault::close());
    let refused = http
        .post(emu.auth_url())
        .json(&credentials(DEMO_KEY_ID, DEMO_SECRET))
        .send()
        .await;
    assert!(refused.is_err());
    // The server goes on serving new connections.
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    let stats = emu.stats();
    assert_eq!(stats.connections_dropped, 2);
    assert_eq!(stats.chat_requests, 2);
    assert_eq!(stats.chat_status(200), 1);
}

#[tokio::test]
async fn a_cut_stream_errors_before_done() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(Route::Chat, Fault::cut_stream(2));
    let mut body = chat_body("a fairly long answer with many words in it");
    body["stream"] = json!(true);
    let response = chat(&http, &emu, &token, &body).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the stream ended cleanly");
    let text = String::from_utf8(received).unwrap();
    assert!(!text.contains("[DONE]"));
    assert!(text.matches("data: ").count() <= 2, "{text}");
    assert_eq!(emu.stats().connections_dropped, 1);
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
}

#[tokio::test]
async fn a_cut_non_streamed_answer_fails_to_read() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(Route::Chat, Fault::cut_stream(1));
    let response = chat(&http, &emu, &token, &chat_body("hi")).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
}

async fn statuses_with_seed(seed: u64) -> Vec<u16> {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.set_fault_probability(0.3, seed, &[Route::Chat]);
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(chat_status(&http, &emu, &token).await);
    }
    statuses
}

#[tokio::test]
async fn random_faults_are_deterministic_for_a_seed() {
    let first = statuses_with_seed(42).await;
    let second = statuses_with_seed(42).await;
    assert_eq!(first, second);
    let faulted = first.iter().filter(|&&status| status != 200).count();
    assert!((5..=35).contains(&faulted), "{faulted} faults in {first:?}");
    assert!(
        first
            .iter()
            .all(|status| [0, 200, 429, 500, 502, 503].contains(status))
    );
}

#[tokio::test]
async fn random_faults_touch_only_the_selected_routes_and_stop_at_zero() {
    let emu = start().await;
    let http = http();
    emu.set_random_faults(vec![Fault::status(500)]);
    emu.set_fault_probability(1.0, 7, &[Route::Chat]);
    let token = demo_token(&http, &emu).await;
    assert_eq!(chat_status(&http, &emu, &token).await, 500);
    emu.set_fault_probability(0.0, 7, &[Route::Chat]);
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
}

#[tokio::test]
async fn scripted_faults_come_before_random_ones() {
    let emu = Emulator::builder()
        .fault(Route::Chat, Fault::status(418))
        .fault_probability(1.0, 1, &[Route::Chat])
        .random_faults(vec![Fault::status(503)])
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    assert_eq!(chat_status(&http, &emu, &token).await, 418);
    assert_eq!(chat_status(&http, &emu, &token).await, 503);
}
