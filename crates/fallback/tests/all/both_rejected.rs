//! Both keys refused: one error that names both.

use std::error::Error;
use std::sync::Arc;

use evolution_fallback::{BothKeysRejected, EndpointFailure, Side, SwitchReason};
use evolution_token::{TokenError, TokenErrorKind};
use http::StatusCode;

use crate::{answer, call, fail, mocks, mocks_with, reply};

#[tokio::test(start_paused = true)]
async fn both_keys_rejected_is_one_error_naming_both() {
    let (service, mut p, mut b) = mocks();
    let service = service.key_ids("key-a", "key-b");
    let pending = call(&service, "hi");
    fail(
        &mut p,
        TokenError::InvalidCredentials {
            key_id: Arc::from("key-a"),
        },
    )
    .await;
    reply(&mut b, answer(403, "forbidden")).await;

    let error = pending.await.unwrap().unwrap_err();
    let both = error
        .downcast_ref::<BothKeysRejected>()
        .expect("a BothKeysRejected");
    let message = both.to_string();
    assert!(message.starts_with("both keys were rejected"), "{message}");
    assert!(message.contains("primary key `key-a`"), "{message}");
    assert!(message.contains("backup key `key-b`"), "{message}");
    assert!(message.contains("check"), "{message}");

    assert_eq!(both.primary().side(), Side::Primary);
    assert_eq!(both.primary().key_id(), Some("key-a"));
    assert_eq!(
        both.primary().reason(),
        SwitchReason::KeyRejected(TokenErrorKind::InvalidCredentials)
    );
    assert!(both.primary().token_error().unwrap().is_auth());
    assert_eq!(both.backup().key_id(), Some("key-b"));
    assert_eq!(both.backup().status(), Some(StatusCode::FORBIDDEN));

    // source(): the primary's rejection, then its token error.
    let source = both.source().expect("the primary's rejection");
    assert!(source.to_string().starts_with("primary key `key-a`"));
    assert!(source.source().unwrap().is::<TokenError>());
}

#[tokio::test(start_paused = true)]
async fn the_key_id_from_iam_wins_over_a_stale_label() {
    let (service, mut p, mut b) = mocks();
    let service = service.key_ids("old-a", "key-b");
    let pending = call(&service, "hi");
    fail(
        &mut p,
        TokenError::Forbidden {
            key_id: Arc::from("new-a"),
        },
    )
    .await;
    reply(&mut b, answer(401, "revoked")).await;
    let error = pending.await.unwrap().unwrap_err();
    let both = error.downcast_ref::<BothKeysRejected>().unwrap();
    assert_eq!(both.primary().key_id(), Some("new-a"));
    assert_eq!(both.backup().reason(), SwitchReason::Unauthorized);
}

#[tokio::test(start_paused = true)]
async fn without_key_ids_the_sides_are_named() {
    let (service, mut p, mut b) = mocks();
    let pending = call(&service, "hi");
    reply(&mut p, answer(401, "no")).await;
    reply(&mut b, answer(401, "no")).await;
    let error = pending.await.unwrap().unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("primary key: the API answered 401"),
        "{message}"
    );
    assert!(
        message.contains("backup key: the API answered 401"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn while_on_the_backup_both_are_tried_once_per_call() {
    let (service, mut p, mut b) = mocks();
    let handle = service.handle();
    let pending = call(&service, "first");
    reply(&mut p, answer(401, "no")).await;
    reply(&mut b, answer(401, "no")).await;
    assert!(pending.await.unwrap().unwrap_err().is::<BothKeysRejected>());
    assert!(!handle.using_primary());

    // On the backup now: refused there, then once more on the primary, then one error.
    let pending = call(&service, "second");
    reply(&mut b, answer(401, "no")).await;
    reply(&mut p, answer(403, "no")).await;
    let error = pending.await.unwrap().unwrap_err();
    let both = error.downcast_ref::<BothKeysRejected>().unwrap();
    assert_eq!(both.primary().status(), Some(StatusCode::FORBIDDEN));
    assert_eq!(both.backup().status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(handle.switches(), 1, "no flapping between two dead keys");
    assert!(!handle.using_primary());
}

#[tokio::test(start_paused = true)]
async fn an_outage_of_the_backup_is_not_a_key_problem() {
    let (service, mut p, mut b) = mocks_with(EndpointFailure);
    let pending = call(&service, "hi");
    reply(&mut p, answer(401, "no")).await;
    reply(&mut b, answer(503, "busy")).await;
    // The retry layer above sees the backup's 503 as it is.
    assert_eq!(
        pending.await.unwrap().unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
