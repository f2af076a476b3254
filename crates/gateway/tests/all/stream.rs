//! `stream: true`: the upstream's events pass through one by one as they arrive, a client
//! that goes away stops the upstream stream, and the upstream sees the gateway's token and
//! the request id, never the gateway key.

use std::time::Duration;

use evolution_testkit::emulator;
use serde_json::json;

use crate::support::upstream::{Ended, FIRST, REST};
use crate::support::{GATEWAY_KEY, LIMIT, MODEL, Served, Upstream, client_for, http, keyed_config};

fn stream_body() -> serde_json::Value {
    json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

/// The next body chunk, within [`LIMIT`].
async fn next_chunk(response: &mut reqwest::Response) -> Option<bytes::Bytes> {
    tokio::time::timeout(LIMIT, response.chunk())
        .await
        .expect("a chunk (or the end) in time")
        .expect("the body reads")
}

#[tokio::test]
async fn events_pass_through_as_they_arrive_not_gathered() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let gateway = Served::with(client_for(&emu, &upstream.base_url()), keyed_config()).await;

    let mut response = http()
        .post(gateway.at("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .header("x-request-id", "stream-req-1")
        .json(&stream_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{response:?}"
    );

    // The upstream holds everything after its first event: that first event must get
    // through now, on its own.
    let first = next_chunk(&mut response).await.expect("a first chunk");
    assert_eq!(first, FIRST.as_bytes());
    // Nothing more comes while the upstream holds.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), response.chunk())
            .await
            .is_err(),
        "a chunk arrived while the upstream held its stream"
    );

    upstream.release();
    let mut rest = Vec::new();
    while let Some(chunk) = next_chunk(&mut response).await {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(rest).unwrap(), REST.concat());
    assert_eq!(upstream.next_ended(LIMIT).await, Some(Ended::Complete));

    // What the upstream was sent: the IAM token, never the gateway key; the request id.
    let headers = upstream.headers();
    assert_eq!(headers.len(), 1);
    let authorization = headers[0]["authorization"].to_str().unwrap();
    let token = authorization
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("a bearer token: {authorization}"));
    assert!(emu.issued_tokens().iter().any(|issued| issued == token));
    assert!(!authorization.contains(GATEWAY_KEY));
    assert!(
        headers[0]
            .values()
            .all(|value| !String::from_utf8_lossy(value.as_bytes()).contains(GATEWAY_KEY)),
        "{headers:?}"
    );
    assert_eq!(headers[0]["x-request-id"], "stream-req-1");
    assert_eq!(emu.stats().iam_requests, 1);
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_stops_the_upstream_stream() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let gateway = Served::with(client_for(&emu, &upstream.base_url()), keyed_config()).await;

    let mut response = http()
        .post(gateway.at("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .json(&stream_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(next_chunk(&mut response).await.unwrap(), FIRST.as_bytes());

    drop(response);

    assert_eq!(
        upstream.next_ended(Duration::from_secs(5)).await,
        Some(Ended::Dropped),
        "the upstream's stream runs on after the client went away"
    );
}

#[tokio::test]
async fn a_client_that_goes_away_before_the_answer_stops_the_upstream_request() {
    use tokio::io::AsyncWriteExt;

    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let gateway = Served::with(client_for(&emu, &upstream.base_url()), keyed_config()).await;

    let mut client = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let request = format!(
        "GET /v1/models HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {GATEWAY_KEY}\r\n\r\n"
    );
    client.write_all(request.as_bytes()).await.unwrap();
    // The upstream has the request (it answers nothing until released)...
    for _ in 0..500 {
        if !upstream.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        upstream.received().len(),
        1,
        "the request never reached the upstream"
    );

    // ...when the client hangs up.
    drop(client);

    assert_eq!(
        upstream.next_ended(Duration::from_secs(5)).await,
        Some(Ended::Dropped),
        "the upstream request outlived the client that made it"
    );
}

#[tokio::test]
async fn a_generated_request_id_is_the_one_sent_upstream() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    upstream.release();
    let gateway = Served::with(client_for(&emu, &upstream.base_url()), keyed_config()).await;

    let response = http()
        .post(gateway.at("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .json(&stream_body())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"].clone();
    assert!(!id.is_empty());
    assert_eq!(upstream.headers()[0]["x-request-id"], id);
}

/// HTTP/2 without TLS (prior knowledge): the same passthrough, and a client that resets
/// its stream stops the upstream's.
#[tokio::test]
async fn h2c_clients_stream_too_and_a_reset_stops_the_upstream() {
    let emu = emulator().await;
    let upstream = Upstream::start().await;
    let gateway = Served::with(client_for(&emu, &upstream.base_url()), keyed_config()).await;
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(LIMIT)
        .build()
        .unwrap();
    let open = || {
        h2c.post(gateway.at("/v1/chat/completions"))
            .bearer_auth(GATEWAY_KEY)
            .json(&stream_body())
            .send()
    };

    let mut dropped = open().await.unwrap();
    assert_eq!(dropped.version(), reqwest::Version::HTTP_2);
    assert_eq!(next_chunk(&mut dropped).await.unwrap(), FIRST.as_bytes());
    drop(dropped);
    assert_eq!(
        upstream.next_ended(Duration::from_secs(5)).await,
        Some(Ended::Dropped)
    );

    let mut response = open().await.unwrap();
    assert_eq!(next_chunk(&mut response).await.unwrap(), FIRST.as_bytes());
    upstream.release();
    let mut rest = Vec::new();
    while let Some(chunk) = next_chunk(&mut response).await {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(rest).unwrap(), REST.concat());
}
