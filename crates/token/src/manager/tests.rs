//! What only the inside can show: the hot path takes no lock, and needs no runtime.

use std::sync::Arc;
use std::sync::mpsc;

use futures_util::FutureExt;
use secrecy::SecretString;
use tokio::time::{Duration, Instant};

use super::schedule::Cached;
use super::*;
use crate::error::AbortReason;

/// A manager whose IAM is a closed loopback port (nothing leaves the machine).
fn manager() -> TokenManager {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    TokenManager::builder(Credentials::new("key-id", "secret"))
        .auth_url(format!("http://{closed}/api/v1/auth/token"))
        .fetch_attempts(1)
        .build()
        .unwrap()
}

/// Caches a token whose refresh-ahead point has passed: the next `cached()` wants a
/// background refresh.
fn cache_a_token_due_ahead(tokens: &TokenManager) -> AccessToken {
    let now = Instant::now();
    let token = AccessToken::new(
        SecretString::from("due-token"),
        Arc::from("key-id"),
        now,
        now + Duration::from_secs(3600),
    )
    .unwrap();
    tokens.shared.cache.store(Some(Arc::new(Cached {
        token: token.clone(),
        refresh_at: now,
        usable_until: now + Duration::from_secs(3570),
    })));
    token
}

/// Without a runtime, `cached()` serves the token and starts nothing (there is nothing to
/// run a refresh on); it leaves no refresh in flight behind, so inside a runtime the
/// refresh ahead starts. A runtime dropped with that refresh in it leaves none either.
#[test]
fn cached_outside_a_runtime_serves_the_token_and_wedges_nothing() {
    let tokens = manager();
    let token = cache_a_token_due_ahead(&tokens);
    let served = tokens.cached().expect("the cached token");
    assert!(served.same_as(&token));
    assert!(!tokens.info().refresh_in_flight);
    // With no token to serve, a refresh cannot run: an error that says why, at once.
    tokens.invalidate();
    let error = tokens
        .get_token()
        .now_or_never()
        .expect("no wait without a runtime")
        .unwrap_err();
    assert!(
        matches!(
            error,
            TokenError::Aborted {
                reason: AbortReason::NoRuntime
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("call the token manager from inside a tokio runtime")
    );
    let token = cache_a_token_due_ahead(&tokens);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert!(tokens.cached().unwrap().same_as(&token));
        assert!(tokens.info().refresh_in_flight, "the refresh ahead started");
    });
    drop(runtime);
    assert!(
        !tokens.info().refresh_in_flight,
        "the refresh dropped with its runtime is still in flight"
    );
}

/// While IAM backs off after a failed refresh, `cached()` takes no lock: with the refresh
/// lock held elsewhere, it still answers.
#[test]
fn the_hot_path_takes_no_lock_while_backing_off() {
    let tokens = manager();
    let token = cache_a_token_due_ahead(&tokens);
    // The tenth failure in a row: 15 to 30 s of backoff.
    tokens.shared.backoff.start(10, Instant::now(), None);

    let held = tokens.shared.lock_refresh();
    let (answer, answered) = mpsc::channel();
    std::thread::spawn({
        let tokens = tokens.clone();
        move || {
            let _ = answer.send(tokens.cached().map(|t| t.key_id().to_owned()));
        }
    });
    let answered = answered.recv_timeout(std::time::Duration::from_secs(5));
    drop(held);
    assert_eq!(
        answered,
        Ok(Some(token.key_id().to_owned())),
        "cached() waited for the refresh lock"
    );
}

/// Inside the refresh buffer while IAM backs off, `get_token` serves the stale-but-valid
/// token without taking the refresh lock either (6c13bed did; the backoff rewrite lost it).
#[test]
fn a_stale_token_is_served_without_the_lock_while_backing_off() {
    let tokens = manager();
    let now = Instant::now();
    let token = AccessToken::new(
        SecretString::from("stale-token"),
        Arc::from("key-id"),
        now,
        now + Duration::from_secs(20),
    )
    .unwrap();
    // Past its usable point (inside the 30 s buffer), not yet expired.
    tokens.shared.cache.store(Some(Arc::new(Cached {
        token: token.clone(),
        refresh_at: now,
        usable_until: now,
    })));
    tokens.shared.backoff.start(10, now, None);

    let held = tokens.shared.lock_refresh();
    let (answer, answered) = mpsc::channel();
    std::thread::spawn({
        let tokens = tokens.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let got = runtime.block_on(tokens.get_token());
            let _ = answer.send(got.map(|t| t.same_as(&token)).ok());
        }
    });
    let answered = answered.recv_timeout(std::time::Duration::from_secs(5));
    drop(held);
    assert_eq!(
        answered,
        Ok(Some(true)),
        "get_token waited for the refresh lock"
    );
}
