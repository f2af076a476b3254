use std::time::Duration;

use futures_util::future::join_all;
use secrecy::ExposeSecret;

use crate::{client, emulator};

#[tokio::test]
async fn revoked_token_mid_run_is_invisible() {
    let emu = emulator().await;
    let llm = client(&emu);
    for i in 0..10 {
        if i == 5 {
            let token = llm.token_manager().get_token().await.unwrap();
            assert!(emu.revoke_token(token.secret().expose_secret()));
        }
        llm.invoke(format!("call {i}")).await.unwrap();
    }
    let stats = emu.stats();
    assert_eq!(stats.iam_requests, 2, "one extra IAM request");
    assert_eq!(stats.chat_status(401), 1);
    assert_eq!(stats.chat_status(200), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_a_cold_client_make_one_iam_request() {
    let emu = emulator().await;
    emu.set_latency(evolution_emulator::Route::Iam, Duration::from_millis(50));
    let llm = client(&emu);
    let calls = (0..64).map(|i| {
        let llm = llm.clone();
        tokio::spawn(async move { llm.invoke(format!("q{i}")).await })
    });
    for result in join_all(calls).await {
        result.unwrap().unwrap();
    }
    assert_eq!(emu.stats().iam_requests, 1);
    assert_eq!(emu.stats().chat_status(200), 64);
}
