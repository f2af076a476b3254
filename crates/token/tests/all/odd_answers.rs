//! Odd IAM answers: documented behaviour, never a panic, never a refresh loop.

use std::time::Duration;

use evolution_emulator::{Fault, Route};
use evolution_token::{InvalidResponseReason, MAX_TOKEN_LIFETIME, TokenError};
use serde_json::json;

use crate::{emulator, emulator_with_ttl, manager};

async fn rejected(fault: Fault) -> InvalidResponseReason {
    let emu = emulator().await;
    emu.push_fault(Route::Iam, fault);
    let tokens = manager(&emu);
    let error = tokens.get_token().await.unwrap_err();
    // Not transient: one IAM request, no retries.
    assert_eq!(emu.stats().iam_requests, 1, "{error}");
    assert!(!error.is_transient());
    match error {
        TokenError::InvalidResponse { reason, .. } => reason,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn unusable_bodies_are_invalid_response_errors() {
    use InvalidResponseReason::*;
    let token = "evo_0123456789";
    let cases = [
        (
            Fault::iam_body(json!({"access_token": token, "expires_in": 0})),
            ExpiresInNotPositive,
        ),
        (
            Fault::iam_body(json!({"access_token": token, "expires_in": -5})),
            ExpiresInNotPositive,
        ),
        (
            Fault::iam_body(json!({"access_token": token, "expires_in": "3600"})),
            ExpiresInNotANumber,
        ),
        (
            Fault::iam_body(json!({"expires_in": 3600})),
            MissingAccessToken,
        ),
        (
            Fault::iam_body(json!({"access_token": "", "expires_in": 3600})),
            InvalidAccessToken,
        ),
        (Fault::iam_body(json!(["not", "an", "object"])), NotAnObject),
        (
            Fault::raw_body(200, "text/html", "<html>oops</html>"),
            NotJson,
        ),
        (Fault::raw_body(200, "application/json", ""), NotJson),
        (
            Fault::raw_body(200, "application/json", "{\"access_tok"),
            NotJson,
        ),
    ];
    for (fault, expected) in cases {
        assert_eq!(rejected(fault).await, expected);
    }
}

#[tokio::test(start_paused = true)]
async fn missing_expires_in_means_an_hour() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::iam_body(json!({"access_token": "evo_abc"})),
    );
    let token = manager(&emu).get_token().await.unwrap();
    assert_eq!(token.expires_in(), Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn huge_expires_in_is_clamped() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::iam_body(json!({"access_token": "evo_abc", "expires_in": 1_000_000_000_000u64})),
    );
    let token = manager(&emu).get_token().await.unwrap();
    assert_eq!(token.expires_in(), MAX_TOKEN_LIFETIME);
}

/// 10 s tokens with a 30 s buffer are used for half their life: calls every second
/// for a minute cause about one refresh per 5 s, not one per call.
#[tokio::test(start_paused = true)]
async fn lifetime_shorter_than_the_buffer_does_not_loop() {
    let emu = emulator_with_ttl(Duration::from_secs(10)).await;
    let tokens = manager(&emu);
    for _ in 0..60 {
        let token = tokens.get_token().await.unwrap();
        assert!(!token.is_expired());
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let requests = emu.stats().iam_requests;
    assert!((10..=15).contains(&requests), "{requests} IAM requests");
}
