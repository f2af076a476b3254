use std::time::Duration;

use futures_util::future::join_all;

use crate::{emulator, emulator_with_ttl, manager};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_cold_callers_make_one_iam_request() {
    let emu = emulator().await;
    emu.set_latency(evolution_emulator::Route::Iam, Duration::from_millis(50));
    let tokens = manager(&emu);

    let calls = (0..10_000).map(|_| {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.get_token().await })
    });
    let results = join_all(calls).await;

    let first = results[0].as_ref().unwrap().as_ref().unwrap().clone();
    for result in &results {
        assert!(result.as_ref().unwrap().as_ref().unwrap().same_as(&first));
    }
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 1);
    assert_eq!(stats.iam_in_flight_max, 1);
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_callers_at_expiry_make_one_iam_request() {
    let emu = emulator_with_ttl(Duration::from_secs(600)).await;
    let tokens = manager(&emu);
    let old = tokens.get_token().await.unwrap();

    // Past the refresh buffer: nobody may use the old token any more.
    tokio::time::advance(Duration::from_secs(580)).await;
    emu.set_latency(evolution_emulator::Route::Iam, Duration::from_millis(50));
    let results = join_all((0..10_000).map(|_| tokens.get_token())).await;

    for result in &results {
        let token = result.as_ref().unwrap();
        assert!(!token.same_as(&old));
        assert!(token.expires_in() > Duration::from_secs(500));
    }
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 2);
    assert_eq!(stats.iam_in_flight_max, 1);
}
