//! Primary/backup keys through `EvolutionInference`.

use std::time::Duration;

use evolution_client::{Error, EvolutionInference, Failback};
use evolution_emulator::{DEMO_MODEL, Emulator, Fault, Route};
use futures_util::future::join_all;

const PRIMARY: &str = "primary-key";
const BACKUP: &str = "backup-key";

async fn two_keys() -> Emulator {
    Emulator::builder()
        .key(PRIMARY, "primary-secret")
        .key(BACKUP, "backup-secret")
        .start()
        .await
        .unwrap()
}

fn with_backup(emu: &Emulator) -> evolution_client::EvolutionInferenceBuilder {
    EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id(PRIMARY)
        .secret("primary-secret")
        .backup_credentials(BACKUP, "backup-secret")
        .base_url(emu.base_url())
        .auth_url(emu.auth_url())
}

#[tokio::test(start_paused = true)]
async fn a_disabled_primary_key_falls_back_to_the_backup() {
    let emu = two_keys().await;
    emu.disable_key(PRIMARY);
    let llm = with_backup(&emu).build().unwrap();
    for i in 0..5 {
        let answer = llm.invoke(format!("q{i}")).await.unwrap();
        assert_eq!(answer, format!("[{BACKUP}] echo: q{i}"));
    }
    assert!(!llm.using_primary());
    assert_eq!(llm.fallback().unwrap().switches(), 1);
    assert_eq!(emu.stats().iam_requests_for(PRIMARY), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_revoked_under_64_callers_switches_once_and_fails_nothing() {
    let emu = two_keys().await;
    let llm = with_backup(&emu).failback(Failback::Never).build().unwrap();
    llm.invoke("warm up").await.unwrap();
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let llm = llm.clone();
            tokio::spawn(async move {
                for j in 0..5 {
                    llm.invoke(format!("{i}-{j}")).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    emu.disable_key(PRIMARY);
    emu.revoke_key(PRIMARY);
    for call in join_all(calls).await {
        call.unwrap().unwrap();
    }
    assert!(!llm.using_primary());
    assert_eq!(llm.fallback().unwrap().switches(), 1);
}

#[tokio::test(start_paused = true)]
async fn failback_after_the_interval_and_never_with_never() {
    for failback in [Failback::After(Duration::from_secs(60)), Failback::Never] {
        let emu = two_keys().await;
        emu.disable_key(PRIMARY);
        let llm = with_backup(&emu).failback(failback).build().unwrap();
        llm.invoke("q").await.unwrap();
        assert!(!llm.using_primary());
        emu.enable_key(PRIMARY);
        tokio::time::sleep(Duration::from_secs(61)).await;
        let answer = llm.invoke("q").await.unwrap();
        match failback {
            Failback::Never => {
                assert_eq!(answer, format!("[{BACKUP}] echo: q"));
                assert!(!llm.using_primary());
            }
            _ => {
                assert_eq!(answer, format!("[{PRIMARY}] echo: q"));
                assert!(llm.using_primary());
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rotate_moves_traffic_by_hand() {
    let emu = two_keys().await;
    let llm = with_backup(&emu).build().unwrap();
    assert!(
        llm.invoke("a")
            .await
            .unwrap()
            .starts_with(&format!("[{PRIMARY}]"))
    );
    llm.fallback().unwrap().rotate();
    assert!(
        llm.invoke("b")
            .await
            .unwrap()
            .starts_with(&format!("[{BACKUP}]"))
    );
    llm.fallback().unwrap().rotate();
    assert!(
        llm.invoke("c")
            .await
            .unwrap()
            .starts_with(&format!("[{PRIMARY}]"))
    );
}

#[tokio::test(start_paused = true)]
async fn both_keys_rejected_is_one_clear_error_without_a_storm() {
    let emu = two_keys().await;
    emu.disable_key(PRIMARY);
    emu.disable_key(BACKUP);
    let llm = with_backup(&emu).build().unwrap();
    let error = llm.invoke("q").await.unwrap_err();
    assert!(matches!(error, Error::KeysRejected(_)), "{error:?}");
    assert!(error.is_auth());
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(
        message.contains(PRIMARY) && message.contains(BACKUP),
        "{message}"
    );
    assert!(!message.contains("secret-"), "{message}");
    let stats = emu.stats();
    assert_eq!(stats.iam_requests_for(PRIMARY), 1);
    assert_eq!(stats.iam_requests_for(BACKUP), 1);
    assert_eq!(stats.chat_requests, 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_error_from_the_primary_does_not_switch() {
    let emu = two_keys().await;
    emu.push_fault(Route::Chat, Fault::status(500));
    let llm = with_backup(&emu).build().unwrap();
    let answer = llm.invoke("q").await.unwrap();
    assert_eq!(
        answer,
        format!("[{PRIMARY}] echo: q"),
        "retried on the primary"
    );
    assert!(llm.using_primary());
    assert_eq!(llm.fallback().unwrap().switches(), 0);
}

/// Key rotation while 64 callers run: nothing fails, and after it the old key's
/// tokens are no longer used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_credentials_while_64_callers_run() {
    let emu = two_keys().await;
    emu.add_key("rotated-key", "rotated-secret");
    let llm = with_backup(&emu).build().unwrap();
    llm.invoke("warm up").await.unwrap();
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let llm = llm.clone();
            tokio::spawn(async move {
                for j in 0..10 {
                    llm.invoke(format!("{i}-{j}")).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    llm.set_credentials("rotated-key", "rotated-secret")
        .unwrap();
    for call in join_all(calls).await {
        call.unwrap().unwrap();
    }
    let before = emu.stats().chat_requests_for(PRIMARY);
    for i in 0..10 {
        let answer = llm.invoke(format!("after {i}")).await.unwrap();
        assert_eq!(answer, format!("[rotated-key] echo: after {i}"));
    }
    assert_eq!(emu.stats().chat_requests_for(PRIMARY), before);
    assert!(llm.using_primary());
}

/// Replacing either key with an empty one is refused as `Error::Config` naming the setting,
/// with the token manager's reason said once: the backup key's error used to carry the
/// token manager's whole message ("invalid token configuration of `secret`: ...") as its own.
#[tokio::test]
async fn an_empty_replacement_key_is_a_config_error_naming_the_setting() {
    let llm = EvolutionInference::builder()
        .model("m")
        .key_id("k")
        .secret("s")
        .base_url("https://api.example/v1")
        .backup_credentials(BACKUP, "backup-secret")
        .build()
        .unwrap();
    let config = |error: Error| match error {
        Error::Config { field, message } => (field, message),
        other => panic!("expected a configuration error, got {other:?}"),
    };
    let (field, primary) = config(llm.set_credentials("rotated", "").unwrap_err());
    assert_eq!(field, "secret");
    let (field, backup) = config(llm.set_backup_credentials("rotated", "").unwrap_err());
    assert_eq!(field, "backup_credentials");
    assert_eq!(backup, primary);
    assert!(!backup.contains("invalid token configuration"), "{backup}");
}

#[test]
fn backup_credentials_must_not_be_empty() {
    let error = EvolutionInference::builder()
        .model("m")
        .key_id("k")
        .secret("s")
        .base_url("https://api.example/v1")
        .backup_credentials("", "x")
        .build()
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Config {
                field: "backup_credentials",
                ..
            }
        ),
        "{error}"
    );
}
