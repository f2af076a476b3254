use std::time::Duration;

use evolution_emulator::Route;

use crate::{emulator, manager};

/// A caller dropped mid-refresh cancels nothing: the refresh completes for the others
/// and the manager is not left in a stuck state.
#[tokio::test(start_paused = true)]
async fn dropped_caller_does_not_cancel_the_refresh() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_millis(500));
    let tokens = manager(&emu);

    let first = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.get_token().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    let second = tokens.get_token().await.unwrap();
    assert_eq!(
        emu.stats().iam_requests,
        1,
        "the second caller joined the same refresh"
    );
    assert!(tokens.get_token().await.unwrap().same_as(&second));
}

#[tokio::test(start_paused = true)]
async fn refresh_completes_when_every_caller_gave_up() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_millis(500));
    let tokens = manager(&emu);
    let gave_up = tokio::time::timeout(Duration::from_millis(100), tokens.get_token()).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(tokens.info().has_token);
    tokens.get_token().await.unwrap();
    assert_eq!(emu.stats().iam_requests, 1);
}

/// Callers dropped at many points of the refresh leave no poisoned state.
#[tokio::test(start_paused = true)]
async fn callers_dropped_at_random_points_leave_no_poisoned_state() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_millis(50));
    let tokens = manager(&emu);
    for round in 0..20u64 {
        tokens.invalidate();
        let handles: Vec<_> = (0..50u64)
            .map(|i| {
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    let limit = Duration::from_millis((i * 7 + round * 13) % 80);
                    tokio::time::timeout(limit, tokens.get_token()).await
                })
            })
            .collect();
        for handle in handles {
            if let Ok(Ok(result)) = handle.await {
                result.unwrap();
            }
        }
        tokens.get_token().await.unwrap();
    }
    assert_eq!(emu.stats().iam_requests, 20);
}
