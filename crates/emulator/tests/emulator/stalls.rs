//! Stalled streams (`Fault::stall_stream`): the head at once, some events, then a pause, on
//! tokio's clock.

use std::time::Duration;

use evolution_emulator::{Emulator, Fault, Route};
use futures_util::StreamExt;
use reqwest::{Client, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{chat, chat_body, demo_token, http, sse_payloads, start};

fn stream_body(content: &str) -> Value {
    let mut body = chat_body(content);
    body["stream"] = true.into();
    body["stream_options"] = json!({ "include_usage": true });
    body
}

/// The body, with the time each chunk arrived after `since` and how many events it held.
async fn timed_body(response: Response, since: Instant) -> (String, Vec<(Duration, usize)>) {
    let mut text = String::new();
    let mut arrivals = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        let events = chunk.windows(6).filter(|w| w == b"data: ").count();
        arrivals.push((since.elapsed(), events));
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    (text, arrivals)
}

/// Events that arrived before and after `at`.
fn split_at(arrivals: &[(Duration, usize)], at: Duration) -> (usize, usize) {
    let before = arrivals
        .iter()
        .filter(|(t, _)| *t < at)
        .map(|(_, n)| n)
        .sum();
    let after = arrivals
        .iter()
        .filter(|(t, _)| *t >= at)
        .map(|(_, n)| n)
        .sum();
    (before, after)
}

async fn stalled_stream(
    http: &Client,
    emu: &Emulator,
    token: &str,
) -> (String, Vec<(Duration, usize)>, Duration) {
    let sent = Instant::now();
    let response = chat(http, emu, token, &stream_body("hello there")).await;
    assert_eq!(response.status(), 200);
    let head = sent.elapsed();
    let (text, arrivals) = timed_body(response, sent).await;
    (text, arrivals, head)
}

#[tokio::test(start_paused = true)]
async fn a_stall_before_the_first_chunk_sends_the_head_at_once() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let pause = Duration::from_secs(10);
    emu.push_fault(Route::Chat, Fault::stall_stream(0, pause));
    let (text, arrivals, head) = stalled_stream(&http, &emu, &token).await;
    assert!(head < Duration::from_millis(100), "head after {head:?}");
    let (before, after) = split_at(&arrivals, pause);
    assert_eq!(before, 0, "{arrivals:?}");
    // role, 4 content pieces, finish, usage, [DONE].
    assert_eq!(after, 8, "{arrivals:?}");
    assert_eq!(sse_payloads(&text).len(), 8);
    // Then the rest at once.
    let (last, _) = *arrivals.last().unwrap();
    assert!(last < pause + Duration::from_millis(100), "{arrivals:?}");
    let stats = emu.stats();
    assert_eq!(stats.faults_injected, 1);
    assert_eq!(stats.chat_status(200), 1);
    assert_eq!(stats.chat_streams_open, 0);
    assert!(stats.reported_input_tokens > 0);
}

#[tokio::test(start_paused = true)]
async fn a_stall_mid_stream_is_an_idle_gap_after_n_events() {
    let emu = Emulator::builder()
        .stream_interval(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    let pause = Duration::from_secs(5);
    emu.push_fault(Route::Chat, Fault::stall_stream(2, pause));
    let (text, arrivals, _) = stalled_stream(&http, &emu, &token).await;
    let (before, after) = split_at(&arrivals, pause);
    assert_eq!((before, after), (2, 6), "{arrivals:?}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    // The pause comes on top of the interval before the third event.
    let third = arrivals.iter().find(|(t, _)| *t >= pause).unwrap().0;
    assert!(third >= pause + Duration::from_millis(20), "{arrivals:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stall_past_the_last_event_changes_nothing() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(Route::Chat, Fault::stall_stream(8, Duration::from_secs(60)));
    let (text, arrivals, _) = stalled_stream(&http, &emu, &token).await;
    assert_eq!(sse_payloads(&text).len(), 8);
    assert_eq!(arrivals.last().unwrap().0, Duration::ZERO, "{arrivals:?}");
}

/// The stall is a timer the body holds: a client that goes away mid-stall ends the stream
/// at once, and its usage event is never counted.
#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_mid_stall_ends_the_stream() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    for after in [0, 2] {
        emu.push_fault(
            Route::Chat,
            Fault::stall_stream(after, Duration::from_secs(3600)),
        );
        let response = chat(&http, &emu, &token, &stream_body("hi")).await;
        assert_eq!(emu.stats().chat_streams_open, 1);
        let mut body = response.bytes_stream();
        if after > 0 {
            body.next().await.unwrap().unwrap();
        }
        drop(body);
        let left = Instant::now();
        while emu.stats().chat_streams_open > 0 {
            assert!(
                left.elapsed() < Duration::from_secs(10),
                "the stalled stream stayed open"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stats = emu.stats();
    assert_eq!(stats.chat_streams_open_max, 1);
    assert_eq!(stats.reported_input_tokens, 0);
}

/// A non-streamed answer: the head (with its length) at once, the body after the pause.
#[tokio::test(start_paused = true)]
async fn a_stalled_json_answer_sends_its_body_after_the_pause() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let pause = Duration::from_secs(3);
    for after in [0, 1] {
        emu.push_fault(Route::Chat, Fault::stall_stream(after, pause));
        let sent = Instant::now();
        let response = chat(&http, &emu, &token, &chat_body("hi")).await;
        assert!(sent.elapsed() < Duration::from_millis(100));
        let length: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let (text, arrivals) = timed_body(response, sent).await;
        assert_eq!(text.len(), length);
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            answer["choices"][0]["message"]["content"],
            "[demo-key-id] echo: hi"
        );
        let early = arrivals.iter().filter(|(t, _)| *t < pause).count();
        assert_eq!(early, after, "{arrivals:?}");
        assert!(arrivals.last().unwrap().0 >= pause);
    }
    assert_eq!(emu.stats().reported_input_tokens, 2);
}

#[tokio::test(start_paused = true)]
async fn the_control_endpoint_queues_a_stall() {
    let emu = start().await;
    let http = http();
    let token = demo_token(&http, &emu).await;
    let command = json!({
        "command": "push_fault",
        "route": "chat",
        "fault": { "kind": "stall_stream", "after_chunks": 1, "pause_ms": 2000 },
    });
    let response = http
        .post(format!("{}/_emulator/control", emu.origin()))
        .json(&command)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, arrivals, _) = stalled_stream(&http, &emu, &token).await;
    assert_eq!(
        split_at(&arrivals, Duration::from_secs(2)),
        (1, 7),
        "{arrivals:?}"
    );
}
