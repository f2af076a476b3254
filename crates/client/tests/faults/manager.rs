//! Rows about the token manager under the client: its failure backoff during an IAM outage,
//! a refresh whose runtime dies, and the token metrics of rotated and backup keys.

use std::time::Duration;

use evolution_client::Metrics;
use evolution_emulator::{Fault, Route};
use evolution_token::{AbortReason, Credentials, TokenError};
use futures_util::future::join_all;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::Instant;

use crate::{
    BACKUP, BACKUP_SECRET, FETCH_ATTEMPTS, KEY, break_route, builder, client, echo, emulator, heal,
    says, seen, two_keys,
};

/// Sleeps past the longest failure backoff of the token manager (30 s), after which the
/// next call may start a refresh again.
pub(crate) async fn wait_out_the_token_backoff() {
    tokio::time::sleep(evolution_token::FAILED_REFRESH_BACKOFF_CAP).await;
}
/// 64 callers calling in a loop through 10 s of IAM answering 503, with no token cached:
/// IAM sees only the refreshes the manager's failure backoff lets through (1, 2, 4, 8 s …,
/// jittered over the later half, after refreshes of 0.3..0.6 s: 4 or 5 in 10 s), 3 requests
/// each, however many calls and retries there are. Every call fails with the last
/// `Unavailable`; none reaches the API. Once IAM is back, the first call after the backoff
/// (30 s at most) succeeds.
#[tokio::test(start_paused = true)]
async fn iam_outage_with_64_callers_costs_only_the_backoff_schedule() {
    let emu = emulator().await;
    break_route(&emu, Route::Iam, Fault::status(503));
    let llm = client(&emu);

    let end = Instant::now() + Duration::from_secs(10);
    let callers = (0..64).map(|_| {
        let llm = llm.clone();
        async move {
            let mut calls = 0u64;
            while Instant::now() < end {
                let error = llm.invoke("hi").await.unwrap_err();
                match crate::token_error(&error) {
                    TokenError::Unavailable {
                        status, attempts, ..
                    } => assert_eq!((status.as_u16(), *attempts), (503, 3)),
                    other => panic!("expected Unavailable, got {other:?}"),
                }
                says(
                    &error.to_string(),
                    &["is unavailable", "try again later, or check the auth URL"],
                );
                calls += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            calls
        }
    });
    let calls: u64 = join_all(callers).await.into_iter().sum();

    let refreshes = llm.stats().failed_refreshes;
    assert!(
        (4..=5).contains(&refreshes),
        "{refreshes} refreshes for {calls} calls"
    );
    assert_eq!(seen(&emu), (refreshes * FETCH_ATTEMPTS, 0));

    heal(&emu);
    wait_out_the_token_backoff().await;
    assert_eq!(llm.invoke("back").await.unwrap(), echo(KEY, "back"));
    assert_eq!(seen(&emu), (refreshes * FETCH_ATTEMPTS + 1, 1));
}

/// A call whose token refresh runs on another runtime that shuts down mid-exchange (a
/// second runtime in a test or a worker pool): the call waiting for it fails with
/// `Aborted` saying so (no retry layer here, to see the manager's answer), and after the
/// failure backoff (1 s at most) the next call refreshes and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_whose_runtime_shuts_down_fails_its_waiters_and_is_retried() {
    let emu = emulator().await;
    emu.push_fault(Route::Iam, Fault::delay(Duration::from_secs(60)));
    let llm = crate::builder(&emu).no_retry().build().unwrap();

    let victim = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    drop(victim.spawn({
        let llm = llm.clone();
        async move { llm.invoke("on the dying runtime").await }
    }));
    let since = Instant::now();
    while emu.stats().iam_requests == 0 {
        assert!(since.elapsed() < Duration::from_secs(10), "no IAM request");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let waiter = tokio::spawn({
        let llm = llm.clone();
        async move { llm.invoke("waiting").await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    victim.shutdown_background();

    let error = waiter.await.unwrap().unwrap_err();
    assert!(
        matches!(
            crate::token_error(&error),
            TokenError::Aborted {
                reason: AbortReason::RuntimeShutdown
            }
        ),
        "{error:?}"
    );
    says(
        &error.to_string(),
        &[
            "the token refresh was aborted",
            "the tokio runtime running it shut down",
        ],
    );
    assert!(!llm.token_manager().info().refresh_in_flight);
    assert_eq!(seen(&emu), (1, 0));

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(llm.invoke("again").await.unwrap(), echo(KEY, "again"));
    assert_eq!(seen(&emu), (2, 1));
}

/// The gauge of one key's token expiry, from the recorder.
fn expires_in(snapshotter: &Snapshotter, labels: &[(&str, &str)]) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let mut found: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            found.sort_unstable();
            let mut wanted = labels.to_vec();
            wanted.sort_unstable();
            match value {
                DebugValue::Gauge(v)
                    if key.name() == "evolution_token_expires_in_seconds" && found == wanted =>
                {
                    Some(v.into_inner())
                }
                _ => None,
            }
        })
}

/// With a backup key, the backup's token being dropped (a 401 for it, or by hand) zeroes
/// the backup's expiry gauge only: the primary's keeps its token's lifetime while it
/// serves.
#[tokio::test(start_paused = true)]
async fn the_backups_invalidation_leaves_the_primarys_expiry_gauge() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let emu = two_keys().await;
    let llm = builder(&emu)
        .backup_credentials(BACKUP, BACKUP_SECRET)
        .metrics(Metrics::new())
        .build()
        .unwrap();

    assert_eq!(llm.invoke("hi").await.unwrap(), echo(KEY, "hi"));
    let backup = llm.backup_token_manager().unwrap();
    backup.get_token().await.unwrap();
    backup.invalidate();
    assert_eq!(llm.invoke("again").await.unwrap(), echo(KEY, "again"));

    assert_eq!(
        expires_in(&snapshotter, &[("side", "primary")]),
        Some(3600.0)
    );
    assert_eq!(expires_in(&snapshotter, &[("side", "backup")]), Some(0.0));
    let stats = emu.stats();
    assert_eq!(
        (stats.iam_requests_for(KEY), stats.iam_requests_for(BACKUP)),
        (1, 1)
    );
    assert_eq!(stats.chat_requests, 2);
}

/// Key rotation with `key_id` labels: the dropped token's event names its own key, so the
/// old key's gauge goes to 0 and the new key's reads its new token's lifetime.
#[tokio::test(start_paused = true)]
async fn key_rotation_zeroes_the_old_keys_expiry_gauge() {
    const NEW_KEY: &str = "rotated-key";
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let emu = emulator().await;
    emu.add_key(NEW_KEY, "rotated-secret");
    let llm = crate::builder(&emu)
        .metrics(Metrics::builder().key_id_label(true).build().unwrap())
        .build()
        .unwrap();
    llm.invoke("before").await.unwrap();

    llm.token_manager()
        .set_credentials(Credentials::new(NEW_KEY, "rotated-secret"))
        .unwrap();
    assert_eq!(
        expires_in(&snapshotter, &[("key_id", KEY)]),
        Some(0.0),
        "the old key's token was dropped"
    );
    assert_eq!(llm.invoke("after").await.unwrap(), echo(NEW_KEY, "after"));
    assert_eq!(
        expires_in(&snapshotter, &[("key_id", NEW_KEY)]),
        Some(3600.0)
    );
    assert_eq!(seen(&emu), (2, 2));
}
