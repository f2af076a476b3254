//! A client that opens a connection and sends its headers slowly (or never finishes them)
//! holds it for `header_read_timeout`, no longer.

use std::time::Duration;

use evolution_gateway::GatewayConfig;
use evolution_testkit::emulator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Served, client_builder, config, http};

#[tokio::test]
async fn unfinished_headers_are_cut_after_the_header_read_timeout() {
    let emu = emulator().await;
    let timeout = Duration::from_millis(300);
    let config = GatewayConfig {
        header_read_timeout: timeout,
        ..config()
    };
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config).await;

    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection");
    let elapsed = started.elapsed();

    // Closed (a reset counts), with nothing or a 408 said first.
    if read.is_ok() && !answer.is_empty() {
        assert!(
            answer.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert!(
        elapsed >= timeout - Duration::from_millis(50),
        "{elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // The gateway still serves everyone else.
    let health = http().get(gateway.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// The same on tokio's paused clock: the gateway's header timer is tokio's, so a long
/// timeout is checked exactly, in no real time.
#[tokio::test(start_paused = true)]
async fn the_header_read_timeout_is_exact_on_a_paused_clock() {
    let emu = emulator().await;
    let timeout = Duration::from_secs(7);
    let config = GatewayConfig {
        header_read_timeout: timeout,
        ..config()
    };
    let gateway = Served::with(client_builder(&emu).build().unwrap(), config).await;

    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection");
    let elapsed = started.elapsed();

    if read.is_ok() && !answer.is_empty() {
        assert!(
            answer.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout + Duration::from_secs(1), "{elapsed:?}");
}
