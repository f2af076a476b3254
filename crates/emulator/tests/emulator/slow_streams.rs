//! Slow streams: the gap between events (`stream_interval`) and the number of content pieces
//! (`stream_chunks`), on tokio's clock.

use std::time::Duration;

use evolution_emulator::{Emulator, Fault, Route};
use futures_util::StreamExt;
use futures_util::future::join_all;
use reqwest::Client;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::{chat, chat_body, demo_token, http, sse_payloads};

fn stream_body(content: &str) -> Value {
    let mut body = chat_body(content);
    body["stream"] = true.into();
    body
}

/// The events of one streamed answer, with the time each body chunk arrived after the head.
async fn timed_events(http: &Client, emu: &Emulator, token: &str) -> (Vec<String>, Vec<Duration>) {
    let response = chat(http, emu, token, &stream_body("hello there")).await;
    assert_eq!(response.status(), 200);
    let head = Instant::now();
    let mut text = String::new();
    let mut arrivals = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        arrivals.push(head.elapsed());
    }
    (sse_payloads(&text), arrivals)
}

fn contents(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter(|event| *event != "[DONE]")
        .filter_map(|event| {
            let chunk: Value = serde_json::from_str(event).unwrap();
            let content = &chunk["choices"][0]["delta"]["content"];
            let finish = &chunk["choices"][0]["finish_reason"];
            let role = &chunk["choices"][0]["delta"]["role"];
            (content.is_string() && role.is_null() && finish.is_null())
                .then(|| content.as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn events_leave_one_interval_apart_for_n_content_chunks() {
    let emu = Emulator::builder()
        .stream_interval(Duration::from_secs(1))
        .stream_chunks(30)
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    let (events, arrivals) = timed_events(&http, &emu, &token).await;
    // role, 30 content pieces, finish, [DONE]: 33 events, 32 gaps.
    assert_eq!(events.len(), 33);
    let pieces = contents(&events);
    assert_eq!(pieces.len(), 30);
    assert_eq!(pieces.concat(), "[demo-key-id] echo: hello there");
    assert!(arrivals[0] < Duration::from_secs(1), "{arrivals:?}");
    assert_eq!(arrivals.len(), 33, "one event per body chunk");
    for pair in arrivals.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(1), "{arrivals:?}");
    }
    let total = *arrivals.last().unwrap();
    assert!(
        total >= Duration::from_secs(32) && total < Duration::from_secs(33),
        "{total:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn without_settings_a_stream_has_a_piece_per_word_and_no_gaps() {
    let emu = Emulator::builder().start().await.unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    let (events, arrivals) = timed_events(&http, &emu, &token).await;
    assert_eq!(
        contents(&events),
        ["[demo-key-id] ", "echo: ", "hello ", "there"]
    );
    assert_eq!(*arrivals.last().unwrap(), Duration::ZERO);
}

/// Many slow streams at once on one current-thread runtime: the pauses are timers, not threads.
#[tokio::test(start_paused = true)]
async fn hundreds_of_slow_streams_share_one_thread() {
    let emu = Emulator::builder()
        .http2(true)
        .stream_interval(Duration::from_secs(1))
        .stream_chunks(10)
        .start()
        .await
        .unwrap();
    let http = Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let token = demo_token(&http, &emu).await;
    let started = Instant::now();
    let streams = join_all((0..500).map(|_| timed_events(&http, &emu, &token))).await;
    assert!(streams.iter().all(|(events, _)| events.len() == 13));
    // 12 gaps of one second each, all streams at once.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(12) && elapsed < Duration::from_secs(14),
        "{elapsed:?}"
    );
    let stats = emu.stats();
    assert_eq!(stats.chat_streams, 500);
    assert_eq!(stats.chat_streams_open_max, 500);
    assert_eq!(stats.chat_streams_open, 0);
}

/// A client that goes away mid-stream closes the stream: the open-stream gauge says so.
#[tokio::test(start_paused = true)]
async fn a_stream_the_client_leaves_is_closed() {
    let emu = Emulator::builder()
        .stream_interval(Duration::from_secs(1))
        .stream_chunks(30)
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    let response = chat(&http, &emu, &token, &stream_body("hi")).await;
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    assert_eq!(emu.stats().chat_streams_open, 1);
    drop(body);
    let left = Instant::now();
    while emu.stats().chat_streams_open > 0 {
        assert!(
            left.elapsed() < Duration::from_secs(10),
            "the stream stayed open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(emu.stats().chat_streams_open_max, 1);
}

#[tokio::test(start_paused = true)]
async fn the_control_endpoint_sets_interval_and_chunks() {
    let emu = Emulator::builder().start().await.unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    for command in [
        json!({ "command": "set_stream_interval", "ms": 250 }),
        json!({ "command": "set_stream_chunks", "chunks": 5 }),
    ] {
        let response = http
            .post(format!("{}/_emulator/control", emu.origin()))
            .json(&command)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{command}");
    }
    let (events, arrivals) = timed_events(&http, &emu, &token).await;
    assert_eq!(contents(&events).len(), 5);
    // role, 5 pieces, finish, [DONE]: 7 gaps.
    assert!(*arrivals.last().unwrap() >= Duration::from_millis(7 * 250));

    emu.set_stream_interval(Duration::ZERO);
    emu.set_stream_chunks(0);
    let (events, arrivals) = timed_events(&http, &emu, &token).await;
    assert_eq!(contents(&events).len(), 4);
    assert_eq!(*arrivals.last().unwrap(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_cut_stream_is_cut_after_its_slow_events() {
    let emu = Emulator::builder()
        .stream_interval(Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    emu.push_fault(Route::Chat, Fault::cut_stream(2));
    let response = chat(&http, &emu, &token, &stream_body("hello there")).await;
    let head = Instant::now();
    let mut body = response.bytes_stream();
    let mut events = 0;
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => events += chunk.windows(6).filter(|w| w == b"data: ").count(),
            Err(_) => failed = true,
        }
    }
    assert_eq!(events, 2);
    assert!(failed, "the stream must end in an error, not [DONE]");
    assert!(head.elapsed() >= Duration::from_secs(1));
    assert_eq!(emu.stats().connections_dropped, 1);
}

#[tokio::test(start_paused = true)]
async fn the_cli_flags_set_interval_and_chunks() {
    use clap::Parser as _;
    let args = evolution_emulator::cli::Args::parse_from([
        "evolution-emulator",
        "--stream-interval-ms",
        "1000",
        "--stream-chunks",
        "30",
    ]);
    let emu = args.builder().start().await.unwrap();
    let http = http();
    let token = demo_token(&http, &emu).await;
    let (events, arrivals) = timed_events(&http, &emu, &token).await;
    assert_eq!(contents(&events).len(), 30);
    assert!(*arrivals.last().unwrap() >= Duration::from_secs(32));
}
