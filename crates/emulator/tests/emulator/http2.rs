//! h2c behind `EmulatorBuilder::http2`: HTTP/2 with prior knowledge and HTTP/1.1 on one port.

use std::time::Duration;

use evolution_emulator::{Emulator, Fault, Route};
use futures_util::future::join_all;
use reqwest::{Client, Version};
use serde_json::Value;

use crate::support::{chat, chat_body, demo_token, http, try_chat};

fn h2() -> Client {
    Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("reqwest client")
}

async fn start_h2() -> Emulator {
    Emulator::builder().http2(true).start().await.unwrap()
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge_and_http1_on_the_same_port() {
    let emu = start_h2().await;
    let h2 = h2();
    let token = demo_token(&h2, &emu).await;
    let response = chat(&h2, &emu, &token, &chat_body("over h2")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "[demo-key-id] echo: over h2"
    );

    let h1 = http();
    let response = chat(&h1, &emu, &token, &chat_body("over h1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(emu.stats().chat_requests, 2);
}

#[tokio::test]
async fn without_the_setting_an_http2_client_gets_no_answer() {
    let emu = Emulator::builder().start().await.unwrap();
    let token = demo_token(&http(), &emu).await;
    assert!(
        try_chat(&h2(), &emu, &token, &chat_body("hi"))
            .await
            .is_err()
    );
    assert_eq!(emu.stats().chat_requests, 0);
}

#[tokio::test]
async fn streams_arrive_whole_over_http2() {
    let emu = start_h2().await;
    let h2 = h2();
    let token = demo_token(&h2, &emu).await;
    let mut body = chat_body("a streamed answer");
    body["stream"] = true.into();
    let response = chat(&h2, &emu, &token, &body).await;
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(emu.stats().chat_streams, 1);
}

/// More requests at once than hyper's default of 200 streams per connection: all are in flight
/// together on the client's one connection.
#[tokio::test]
async fn holds_more_than_200_streams_on_one_connection() {
    let emu = start_h2().await;
    let h2 = h2();
    let token = demo_token(&h2, &emu).await;
    emu.set_latency(Route::Chat, Duration::from_millis(500));
    let body = chat_body("hi");
    let answers = join_all((0..300).map(|_| chat(&h2, &emu, &token, &body))).await;
    assert!(answers.iter().all(|response| response.status() == 200));
    assert_eq!(emu.stats().chat_in_flight_max, 300);
}

#[tokio::test]
async fn a_close_fault_drops_the_http2_connection() {
    let emu = start_h2().await;
    let h2 = h2();
    let token = demo_token(&h2, &emu).await;
    emu.push_fault(Route::Chat, Fault::close());
    assert!(try_chat(&h2, &emu, &token, &chat_body("hi")).await.is_err());
    // The client opens a new connection for the next request.
    assert_eq!(
        chat(&h2, &emu, &token, &chat_body("hi")).await.status(),
        200
    );
    assert_eq!(emu.stats().connections_dropped, 1);
}

#[tokio::test]
async fn shutdown_lets_an_http2_request_in_flight_finish() {
    let emu = start_h2().await;
    let h2 = h2();
    let token = demo_token(&h2, &emu).await;
    emu.set_latency(Route::Chat, Duration::from_millis(300));
    let in_flight = tokio::spawn({
        let (h2, emu, token) = (h2.clone(), emu.clone(), token.clone());
        async move { chat(&h2, &emu, &token, &chat_body("hi")).await.status() }
    });
    while emu.stats().chat_requests == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    emu.shutdown().await;
    assert_eq!(in_flight.await.unwrap(), 200);
    assert!(tokio::net::TcpStream::connect(emu.addr()).await.is_err());
}

#[tokio::test]
async fn the_cli_flag_turns_http2_on() {
    use clap::Parser as _;
    let args = evolution_emulator::cli::Args::parse_from(["evolution-emulator", "--http2"]);
    let emu = args.builder().start().await.unwrap();
    let h2 = h2();
    let token = demo_token(&h2, &emu).await;
    let response = chat(&h2, &emu, &token, &chat_body("hi")).await;
    assert_eq!(response.version(), Version::HTTP_2);
}
