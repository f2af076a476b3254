//! Counters, in process and at `GET /_emulator/stats`.

use std::time::Duration;

use evolution_emulator::{Emulator, Route, Stats};
use futures_util::future::join_all;

use crate::support::{chat_status, credentials, http, iam, token_for};

#[tokio::test]
async fn counts_iam_requests_by_key_and_chat_by_status_and_key() {
    let emu = Emulator::builder()
        .key("k1", "s1")
        .key("k2", "s2")
        .start()
        .await
        .unwrap();
    let http = http();
    let one = token_for(&http, &emu, "k1", "s1").await;
    let two = token_for(&http, &emu, "k2", "s2").await;
    assert_eq!(
        iam(&http, &emu, &credentials("k1", "wrong")).await.status(),
        401
    );
    assert_eq!(
        iam(&http, &emu, &credentials("intruder", "x"))
            .await
            .status(),
        401
    );
    assert_eq!(chat_status(&http, &emu, &one).await, 200);
    assert_eq!(chat_status(&http, &emu, &one).await, 200);
    assert_eq!(chat_status(&http, &emu, &two).await, 200);
    assert_eq!(chat_status(&http, &emu, "evo_bogus").await, 401);

    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 4);
    assert_eq!(stats.iam_requests_for("k1"), 2);
    assert_eq!(stats.iam_requests_for("k2"), 1);
    assert_eq!(stats.iam_requests_for("intruder"), 1);
    assert_eq!(stats.iam_status(200), 2);
    assert_eq!(stats.iam_status(401), 2);
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.chat_requests, 4);
    assert_eq!(stats.chat_status(200), 3);
    assert_eq!(stats.chat_status(401), 1);
    assert_eq!(stats.chat_requests_for("k1"), 2);
    assert_eq!(stats.chat_requests_for("k2"), 1);
    assert_eq!(stats.models_requests, 0);
}

#[tokio::test]
async fn reset_zeroes_every_counter() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    let token = token_for(&http, &emu, "k1", "s1").await;
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    emu.reset_stats();
    assert_eq!(emu.stats(), Stats::default());
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    assert_eq!(emu.stats().chat_requests, 1);
}

#[tokio::test]
async fn sequential_iam_requests_are_never_in_flight_together() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    for _ in 0..5 {
        token_for(&http, &emu, "k1", "s1").await;
    }
    assert_eq!(emu.stats().iam_in_flight_max, 1);
}

// Real time on purpose: a paused clock jumps over the latency as soon as the runtime waits for
// the other connections' I/O, so requests would not overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_iam_requests_are_counted_in_flight_together() {
    let emu = Emulator::builder()
        .key("k1", "s1")
        .latency(Route::Iam, Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let http = http();
    let requests = (0..50).map(|_| token_for(&http, &emu, "k1", "s1"));
    let tokens = join_all(requests).await;
    assert_eq!(tokens.len(), 50);
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 50);
    assert!(stats.iam_in_flight_max >= 2, "{}", stats.iam_in_flight_max);
    assert!(stats.iam_in_flight_max <= 50);
}

#[tokio::test]
async fn the_stats_endpoint_serves_the_same_snapshot() {
    let emu = Emulator::builder().key("k1", "s1").start().await.unwrap();
    let http = http();
    let token = token_for(&http, &emu, "k1", "s1").await;
    assert_eq!(chat_status(&http, &emu, &token).await, 200);
    let response = http
        .get(format!("{}/_emulator/stats", emu.origin()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served: Stats = response.json().await.unwrap();
    assert_eq!(served, emu.stats());
    assert_eq!(served.chat_status(200), 1);
    assert_eq!(served.iam_requests_for("k1"), 1);
}
