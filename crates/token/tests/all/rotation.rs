use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use evolution_emulator::Route;
use evolution_token::{Credentials, TokenError, TokenEvent, TokenInfo, TokenManager};

use crate::{KEY, emulator, manager};

#[tokio::test(start_paused = true)]
async fn set_credentials_switches_keys_and_drops_the_old_token() {
    let emu = emulator().await;
    let tokens = manager(&emu);
    let old = tokens.get_token().await.unwrap();
    assert_eq!(old.key_id(), KEY);

    tokens
        .set_credentials(Credentials::new("other-key", "other-secret"))
        .unwrap();
    assert!(!tokens.info().has_token);
    let new = tokens.get_token().await.unwrap();
    assert_eq!(new.key_id(), "other-key");
    assert_eq!(&*tokens.key_id(), "other-key");
    let stats = emu.stats();
    assert_eq!(stats.iam_requests_for("other-key"), 1);
    assert_eq!(stats.iam_requests_for(KEY), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_running_with_the_old_key_does_not_install_its_token() {
    let emu = emulator().await;
    emu.set_latency(Route::Iam, Duration::from_millis(500));
    let tokens = manager(&emu);
    let stale = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.get_token().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokens
        .set_credentials(Credentials::new("other-key", "other-secret"))
        .unwrap();
    let new = tokens.get_token().await.unwrap();
    assert_eq!(new.key_id(), "other-key");
    // The old refresh still answered its own caller...
    assert_eq!(stale.await.unwrap().unwrap().key_id(), KEY);
    // ...but the cache holds the new key's token.
    assert_eq!(tokens.get_token().await.unwrap().key_id(), "other-key");
}

#[tokio::test]
async fn invalid_new_credentials_keep_the_old_key() {
    let emu = emulator().await;
    let tokens = manager(&emu);
    let error = tokens
        .set_credentials(Credentials::new("k", ""))
        .unwrap_err();
    assert!(matches!(error, TokenError::InvalidConfiguration { .. }));
    assert_eq!(&*tokens.key_id(), KEY);
}

#[tokio::test(start_paused = true)]
async fn invalidate_if_current_never_drops_a_newer_token() {
    let emu = emulator().await;
    let tokens = manager(&emu);
    let first = tokens.get_token().await.unwrap();
    tokens.invalidate();
    let second = tokens.get_token().await.unwrap();
    assert!(!second.same_as(&first));

    assert!(!tokens.invalidate_if_current(&first));
    assert!(tokens.get_token().await.unwrap().same_as(&second));
    assert_eq!(emu.stats().iam_requests, 2);

    assert!(tokens.invalidate_if_current(&second));
    assert!(!tokens.get_token().await.unwrap().same_as(&second));
    assert_eq!(emu.stats().iam_requests, 3);
}

/// An observer may call the manager back: `set_credentials` emits `Invalidated` with no lock
/// held (a regression deadlocks, and the guard below turns that into a failure), and the
/// event names the key of the token it dropped, not the new key.
#[tokio::test(start_paused = true)]
async fn an_observer_may_call_the_manager_during_set_credentials() {
    let emu = emulator().await;
    let manager: Arc<OnceLock<TokenManager>> = Arc::default();
    let seen: Arc<Mutex<Vec<(String, TokenInfo)>>> = Arc::default();
    let tokens = crate::builder(&emu)
        .observer({
            let manager = manager.clone();
            let seen = seen.clone();
            move |event: &TokenEvent| {
                if let (TokenEvent::Invalidated { key_id }, Some(tokens)) = (event, manager.get()) {
                    seen.lock()
                        .unwrap()
                        .push((key_id.to_string(), tokens.info()));
                }
            }
        })
        .build()
        .unwrap();
    manager.set(tokens.clone()).unwrap();
    tokens.get_token().await.unwrap();

    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn({
        let tokens = tokens.clone();
        move || {
            let replaced = tokens.set_credentials(Credentials::new("other-key", "other-secret"));
            let _ = done.send(replaced.is_ok());
        }
    });
    let finished = finished.recv_timeout(Duration::from_secs(10));
    assert_eq!(
        finished,
        Ok(true),
        "set_credentials deadlocked with an observer calling info()"
    );

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (event_key_id, info) = &seen[0];
    assert_eq!(event_key_id, KEY, "the event names the dropped token's key");
    assert_eq!(info.key_id, "other-key");
    assert!(!info.has_token);
}
