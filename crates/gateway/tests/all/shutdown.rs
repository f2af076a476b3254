//! Graceful shutdown: once the shutdown future completes, no new connection is served, the
//! streams in flight run to their end, and `serve` says whether they all made it within the
//! drain timeout.

use std::time::Duration;

use evolution_gateway::{Drained, GatewayConfig};
use evolution_testkit::emulator;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::upstream::{Ended, FIRST, REST};
use crate::support::{LIMIT, MODEL, Served, Upstream, client_for, config, http};

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

/// Waits until a new connection to `addr` is refused (or closed without an answer).
async fn refused_within(addr: std::net::SocketAddr, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(_) => return,
            Ok(stream) => drop(stream),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new connections are still accepted after the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_stream_in_flight_finishes_after_the_shutdown_signal() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let mut gateway = Served::with(client_for(&emu, &upstream.base_url()), config()).await;
    let mut held = open_stream(&gateway).await;

    gateway.shutdown();
    refused_within(gateway.addr, Duration::from_secs(2)).await;

    upstream.release();
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(LIMIT, held.chunk())
        .await
        .unwrap()
        .expect("the stream ends cleanly")
    {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(rest).unwrap(), REST.concat());
    assert_eq!(upstream.next_ended(LIMIT).await, Some(Ended::Complete));
    assert_eq!(gateway.drained(LIMIT).await, Drained::Clean);
}

#[tokio::test]
async fn an_idle_gateway_drains_at_once() {
    let emu = emulator().await;
    let mut gateway = Served::with(
        crate::support::client_builder(&emu).build().unwrap(),
        config(),
    )
    .await;
    // A finished call leaves an idle keep-alive connection behind.
    let client = http();
    let health = client.get(gateway.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let started = tokio::time::Instant::now();
    gateway.shutdown();
    assert_eq!(gateway.drained(LIMIT).await, Drained::Clean);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(client);
}

#[tokio::test]
async fn serve_returns_cut_when_a_stream_outlives_the_drain_timeout() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let config = GatewayConfig {
        drain_timeout: Duration::from_millis(300),
        ..config()
    };
    let mut gateway = Served::with(client_for(&emu, &upstream.base_url()), config).await;
    let _held = open_stream(&gateway).await;

    let started = tokio::time::Instant::now();
    gateway.shutdown();
    let drained = gateway.drained(Duration::from_secs(5)).await;

    assert_eq!(drained, Drained::Cut(1));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn cut_counts_the_connections_still_open_at_the_deadline() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let config = GatewayConfig {
        drain_timeout: Duration::from_millis(300),
        ..config()
    };
    let mut gateway = Served::with(client_for(&emu, &upstream.base_url()), config).await;
    let _held = open_stream(&gateway).await;
    // A second connection, idle after its answer: closed as soon as the shutdown starts.
    let mut idle = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0; 4096];
    let read = idle.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200 OK\r\n"));

    gateway.shutdown();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(LIMIT, idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection is closed at once");

    assert_eq!(
        gateway.drained(Duration::from_secs(5)).await,
        Drained::Cut(1)
    );
}

#[tokio::test]
async fn a_stream_past_the_drain_timeout_is_really_cut() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let config = GatewayConfig {
        drain_timeout: Duration::from_millis(300),
        ..config()
    };
    let mut gateway = Served::with(client_for(&emu, &upstream.base_url()), config).await;
    let mut held = open_stream(&gateway).await;

    gateway.shutdown();
    assert_eq!(
        gateway.drained(Duration::from_secs(5)).await,
        Drained::Cut(1)
    );

    // The client's stream ends (with an error, never the held events) and the upstream's
    // stream is dropped.
    let next = tokio::time::timeout(Duration::from_secs(3), held.chunk())
        .await
        .expect("the cut stream ends");
    assert!(!matches!(next, Ok(Some(_))), "{next:?}");
    assert_eq!(
        upstream.next_ended(Duration::from_secs(3)).await,
        Some(Ended::Dropped)
    );
}
