//! A client that opens a connection and sends its headers slowly (or never finishes them)
//! holds it for `header_read_timeout`, no longer.

use std::time::Duration;

use evolution_gateway::GatewayConfig;
use evolution_testkit::emulator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Served, client_builder, config, http};

/// A gateway over `emu` whose clients have `timeout` to send a request's headers.
async fn served_with_header_timeout(
    emu: &evolution_emulator::Emulator,
    timeout: Duration,
) -> Served {
    let config = GatewayConfig {
        header_read_timeout: timeout,
        ..config()
    };
    Served::with(client_builder(emu).build().unwrap(), config).await
}

/// Sends a request line and one header, never the blank line, and waits up to `patience`
/// for the gateway to close the connection (a reset counts), with nothing or a 408 said
/// first. How long that took.
async fn unfinished_headers_are_closed(gateway: &Served, patience: Duration) -> Duration {
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(patience, stream.read_to_end(&mut answer))
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
    elapsed
}

#[tokio::test]
async fn unfinished_headers_are_cut_after_the_header_read_timeout() {
    let emu = emulator().await;
    let timeout = Duration::from_millis(300);
    let gateway = served_with_header_timeout(&emu, timeout).await;

    let elapsed = unfinished_headers_are_closed(&gateway, Duration::from_secs(5)).await;
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
    let gateway = served_with_header_timeout(&emu, timeout).await;

    let elapsed = unfinished_headers_are_closed(&gateway, Duration::from_secs(60)).await;

    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout + Duration::from_secs(1), "{elapsed:?}");
}

/// Before its first request, a connection is read by hyper-util's `auto` builder to tell
/// HTTP/2's preface from HTTP/1: nothing, one byte, or a part of the preface leaves it
/// waiting for more, and the header timer has not started yet.
#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_or_a_prefix_is_closed_after_the_header_read_timeout() {
    let emu = emulator().await;
    let timeout = Duration::from_secs(7);
    let gateway = served_with_header_timeout(&emu, timeout).await;

    for sent in [&b""[..], b"P", b"PRI * HTTP/2.0\r\n"] {
        let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        let started = tokio::time::Instant::now();
        stream.write_all(sent).await.unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(600), stream.read_to_end(&mut answer)).await;
        let sent = String::from_utf8_lossy(sent);
        assert!(read.is_ok(), "{sent:?}: still open after 600 s");
        let elapsed = started.elapsed();
        assert!(
            elapsed < timeout + Duration::from_secs(1),
            "{sent:?}: {elapsed:?}"
        );
    }
}

/// Between requests, an idle keep-alive connection gets the same time to start the next.
#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let emu = emulator().await;
    let timeout = Duration::from_secs(7);
    let gateway = served_with_header_timeout(&emu, timeout).await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200 OK\r\n"));

    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(600), stream.read_to_end(&mut rest))
        .await
        .expect("closed");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout + Duration::from_secs(1), "{elapsed:?}");
}
