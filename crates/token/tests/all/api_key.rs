//! A static API key: the manager hands out the key itself as its token, with no IAM
//! request, while single flight, invalidation and observers work as for an IAM token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use evolution_token::store::{InMemoryStore, TokenStore};
use evolution_token::{Credentials, TokenError, TokenEvent, TokenManager};
use futures_util::future::join_all;
use secrecy::ExposeSecret;

use crate::emulator;

const API_KEY: &str = "static-api-key-do-not-print";

#[tokio::test(start_paused = true)]
async fn the_key_is_the_token_and_iam_is_never_asked() {
    let emu = emulator().await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let store = Arc::new(InMemoryStore::new());
    let tokens = TokenManager::builder(Credentials::api_key(API_KEY))
        .auth_url(emu.auth_url())
        .shared_cache(store.clone() as Arc<dyn TokenStore>)
        .observer(move |event: &TokenEvent| seen.lock().unwrap().push(format!("{event:?}")))
        .build()
        .unwrap();
    assert!(tokens.is_api_key());
    assert!(tokens.key_id().starts_with("api-key-"));

    // 64 callers on a cold manager: one "refresh", and every one gets the key.
    let callers = (0..64).map(|_| {
        let tokens = tokens.clone();
        async move { tokens.get_token().await }
    });
    for token in join_all(callers).await {
        let token = token.unwrap();
        assert_eq!(token.secret().expose_secret(), API_KEY);
        assert_eq!(token.key_id(), &*tokens.key_id());
    }
    // A month later the same token is served: no refresh is due.
    let first = tokens.get_token().await.unwrap();
    tokio::time::sleep(Duration::from_secs(30 * 24 * 3600)).await;
    assert!(tokens.get_token().await.unwrap().same_as(&first));

    // After a 401 the "refresh" hands out the same key again.
    assert!(tokens.invalidate_if_current(&first));
    let again = tokens.get_token().await.unwrap();
    assert!(!again.same_as(&first));
    assert_eq!(again.secret().expose_secret(), API_KEY);

    assert_eq!(emu.stats().iam_requests, 0);
    assert!(
        store.is_empty(),
        "a static key is not put in the shared cache"
    );
    let events = events.lock().unwrap();
    let succeeded = events
        .iter()
        .filter(|e| e.starts_with("RefreshSucceeded"))
        .count();
    assert_eq!(succeeded, 2, "{events:?}");
    assert!(events.iter().any(|e| e.starts_with("Invalidated")));
    assert!(!events.iter().any(|e| e.contains(API_KEY)));
}

#[test]
fn an_empty_or_spaced_key_is_refused_by_the_build() {
    for key in ["", "  ", "two words"] {
        let error = TokenManager::builder(Credentials::api_key(key))
            .build()
            .unwrap_err();
        assert!(
            matches!(
                error,
                TokenError::InvalidConfiguration {
                    setting: "api_key",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(!error.to_string().contains("two words"), "{error}");
    }
}

#[test]
fn debug_shows_the_label_not_the_key() {
    let credentials = Credentials::api_key(API_KEY);
    let label = credentials.key_id().to_owned();
    let tokens = TokenManager::builder(credentials.clone()).build().unwrap();
    let unbuilt = TokenManager::builder(credentials.clone());
    let printed = format!("{credentials:?} {tokens:?} {unbuilt:?}");
    assert!(printed.contains(&label), "{printed}");
    assert!(!printed.contains(API_KEY), "{printed}");
}
