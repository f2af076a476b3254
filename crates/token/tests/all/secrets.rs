//! The secret and the tokens never appear in logs, errors or `Debug` output.

use evolution_emulator::{Fault, Route};
use evolution_testkit::{Capture, transport};
use evolution_token::{AuthLayer, Credentials, TokenManager};
use secrecy::ExposeSecret;
use tower::{ServiceBuilder, ServiceExt};

use crate::{KEY, SECRET, emulator, manager};

#[tokio::test(start_paused = true)]
async fn no_secret_or_token_in_trace_logs_errors_or_debug() {
    // Scoped to this test, heard on every thread (see `Capture::set_default`).
    let capture = Capture::default();
    let _guard = capture.set_default();
    let mut printed = String::new();

    let emu = emulator().await;
    // Lines met before the subscriber was set were marked unwanted: ask again.
    tracing::callsite::rebuild_interest_cache();
    let tokens = manager(&emu);
    let token = tokens.get_token().await.unwrap();
    printed += &format!(
        "{token:?} {tokens:?} {:?} {:?}",
        tokens.info(),
        Credentials::new(KEY, SECRET)
    );
    printed += &format!("{:?}", token.bearer_header());

    // A revoked token handled by the auth layer, with a request through reqwest.
    emu.revoke_token(token.secret().expose_secret());
    let request = http::Request::post(format!("{}/chat/completions", emu.base_url()))
        .body(bytes::Bytes::from_static(
            br#"{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap();
    printed += &format!("{request:?}");
    let response = ServiceBuilder::new()
        .layer(AuthLayer::new(tokens.clone()))
        .service(transport())
        .oneshot(request)
        .await
        .unwrap();
    printed += &format!("{response:?}");

    // Failures: transient retries, stale serving, wrong secret.
    emu.push_fault(Route::Iam, Fault::status(503));
    tokens.invalidate();
    tokens.get_token().await.unwrap();
    let wrong = TokenManager::builder(Credentials::new(KEY, format!("{SECRET}-wrong")))
        .auth_url(emu.auth_url())
        .build()
        .unwrap();
    let error = wrong.get_token().await.unwrap_err();
    printed += &format!("{error} {error:?}");
    emu.push_fault(
        Route::Iam,
        Fault::iam_body(serde_json::json!({"access_token": "evo_leaky", "expires_in": "soon"})),
    );
    tokens.invalidate();
    let error = tokens.get_token().await.unwrap_err();
    printed += &format!("{error} {error:?}");

    let logs = capture.text();
    assert!(logs.contains("token refresh"), "the capture works: {logs}");
    let issued = emu.issued_tokens();
    assert!(issued.len() >= 3);
    for text in [&logs, &printed] {
        assert!(!text.contains(SECRET), "the secret leaked");
        assert!(
            !text.contains("evo_leaky"),
            "a token from a bad answer leaked"
        );
        for token in &issued {
            assert!(!text.contains(token.as_str()), "a token leaked");
        }
    }
}
