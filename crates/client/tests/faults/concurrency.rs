//! Rows about concurrency: key rotation under load, callers giving up at random points.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use evolution_client::ChatRequest;
use evolution_emulator::Route;
use futures_util::StreamExt;
use futures_util::future::join_all;
use tokio::task::JoinSet;

use crate::{KEY, Rng, builder, echo, emulator_builder};

const NEW_KEY: &str = "rotated-key";
const NEW_SECRET: &str = "rotated-secret-never-printed";

/// `set_credentials` while 64 callers make 10 calls each, with the old key revoked and
/// disabled at that moment: every call succeeds (a call that had the old token gets a 401
/// and is resent with the new one), every call that starts after the rotation is answered
/// with the new key, and each key made exactly one IAM request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rotated_while_64_calls_run() {
    let emu = emulator_builder()
        .key(NEW_KEY, NEW_SECRET)
        .latency(Route::Chat, Duration::from_millis(2))
        .start()
        .await
        .unwrap();
    let llm = crate::client(&emu);
    llm.invoke("warm up").await.unwrap();
    let rotated = Arc::new(AtomicBool::new(false));

    let calls: Vec<_> = (0..64)
        .map(|i| {
            let llm = llm.clone();
            let rotated = rotated.clone();
            tokio::spawn(async move {
                let mut after = Vec::new();
                for j in 0..10 {
                    let prompt = format!("{i}-{j}");
                    let started_after = rotated.load(Ordering::SeqCst);
                    let answer = llm.invoke(&prompt).await?;
                    if started_after {
                        after.push((prompt, answer));
                    }
                }
                Ok::<_, evolution_client::Error>(after)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    llm.set_credentials(NEW_KEY, NEW_SECRET).unwrap();
    rotated.store(true, Ordering::SeqCst);
    emu.revoke_key(KEY);
    emu.disable_key(KEY);

    let mut after_rotation = 0;
    for call in join_all(calls).await {
        for (prompt, answer) in call.unwrap().unwrap() {
            assert_eq!(answer, echo(NEW_KEY, &prompt));
            after_rotation += 1;
        }
    }
    assert!(after_rotation > 0, "the rotation happened while calls ran");

    let stats = emu.stats();
    assert_eq!(stats.iam_requests_for(KEY), 1);
    assert_eq!(stats.iam_requests_for(NEW_KEY), 1);
    assert_eq!(stats.iam_requests, 2);
    assert_eq!(stats.chat_status(200), 641);
    // Only calls in flight with the old token at the rotation were refused, once each.
    let refused = stats.chat_status(401);
    assert!(refused <= 64, "{refused}");
    assert_eq!(stats.chat_requests, 641 + refused);
    assert_eq!(llm.stats().auth_errors, 0);

    let before = emu.stats().chat_requests_for(KEY);
    for i in 0..10 {
        let prompt = format!("after {i}");
        assert_eq!(llm.invoke(&prompt).await.unwrap(), echo(NEW_KEY, &prompt));
    }
    assert_eq!(emu.stats().chat_requests_for(KEY), before);
    assert_eq!(llm.token_manager().key_id().as_ref(), NEW_KEY);
}

/// 1,000 calls (chat, streams, model lists) whose futures are dropped at random points —
/// waiting for a token, during a refresh forced by revocations, waiting for the answer,
/// mid-stream — or aborted as tasks. Afterwards nothing is stuck or poisoned: no refresh is
/// left in flight, concurrent calls succeed with one IAM request at most, and every call is
/// accounted for in `Stats`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_futures_dropped_at_random_points_while_1000_calls_run() {
    let emu = emulator_builder()
        .latency(Route::Iam, Duration::from_millis(15))
        .latency(Route::Chat, Duration::from_millis(3))
        .start()
        .await
        .unwrap();
    let llm = builder(&emu).build().unwrap();
    let finished = Arc::new(AtomicU64::new(0));
    let mut rng = Rng::new(0x5eed);
    let mut tasks = JoinSet::new();
    let mut aborts = Vec::new();

    // Revoke every token now and then, so that drops also land during 401 refreshes.
    let chaos = {
        let emu = emu.clone();
        tokio::spawn(async move {
            let mut revocations = 0u64;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(25)).await;
                emu.revoke_key(KEY);
                revocations += 1;
            }
            revocations
        })
    };

    for i in 0..1000u64 {
        let llm = llm.clone();
        let finished = finished.clone();
        // Over 400 ms: the revocations end after about 250 ms, so that even on a slow
        // machine some calls run after them and can succeed.
        let start_after = rng.millis(400);
        // Half the callers give up after 0..100 ms, the others wait for the answer.
        let give_up_after = if rng.below(2) == 0 {
            rng.millis(100)
        } else {
            Duration::from_secs(60)
        };
        let kind = rng.below(10);
        let handle = tasks.spawn(async move {
            tokio::time::sleep(start_after).await;
            let call = async {
                match kind {
                    0 => {
                        let mut stream = llm
                            .stream(ChatRequest::from_prompt("a b c d e f g"))
                            .await?;
                        while let Some(chunk) = stream.next().await {
                            chunk?;
                        }
                    }
                    1 => {
                        llm.models().await?;
                    }
                    _ => {
                        llm.invoke(format!("call {i}")).await?;
                    }
                }
                Ok::<_, evolution_client::Error>(())
            };
            // Dropping the call future is the caller giving up.
            if let Ok(result) = tokio::time::timeout(give_up_after, call).await {
                // A call resent after a 401 may meet the next revocation: the only failure
                // this scenario can produce.
                if let Err(error) = result {
                    assert_eq!(error.status().map(|s| s.as_u16()), Some(401), "{error:?}");
                } else {
                    finished.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        if rng.below(10) == 0 {
            aborts.push((handle, rng.millis(300)));
        }
    }
    for (handle, after) in aborts {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            handle.abort();
        });
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(error) = result {
            assert!(error.is_cancelled(), "a task panicked: {error}");
        }
    }
    let revocations = chaos.await.unwrap();
    // Let requests the emulator still holds (and any refresh task) finish.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let info = llm.token_manager().info();
    assert!(!info.refresh_in_flight, "{info:?}");
    let iam_during = emu.stats().iam_requests;
    assert!(
        iam_during <= 1 + 2 * revocations,
        "{iam_during} IAM requests for {revocations} revocations"
    );

    // Nothing poisoned: 64 concurrent calls succeed, with at most one new IAM request.
    let calls = (0..64).map(|i| {
        let llm = llm.clone();
        tokio::spawn(async move { llm.invoke(format!("after {i}")).await })
    });
    for (i, result) in join_all(calls).await.into_iter().enumerate() {
        assert_eq!(result.unwrap().unwrap(), echo(KEY, &format!("after {i}")));
    }
    let text = llm
        .stream(ChatRequest::from_prompt("still streams"))
        .await
        .unwrap()
        .collect_text()
        .await
        .unwrap();
    assert_eq!(text, echo(KEY, "still streams"));
    assert!(emu.stats().iam_requests <= iam_during + 1);

    // Every logical call that reached the metrics layer is counted once, finished or not.
    let stats = llm.stats();
    let finished = finished.load(Ordering::Relaxed);
    assert!(
        finished > 0 && finished < 1000,
        "{finished} of 1000 succeeded"
    );
    assert!(stats.successes >= finished + 65, "{stats:?}");
    assert!(stats.total_requests <= 1000 + 65, "{stats:?}");
    assert!(stats.total_requests >= stats.successes, "{stats:?}");
}
