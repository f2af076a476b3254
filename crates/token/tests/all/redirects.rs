//! IAM answering a redirect: the token request carries the secret, so it is never sent on.

use evolution_emulator::{Fault, Route};
use evolution_token::{Credentials, TokenError, TokenErrorKind, TokenManager};

use crate::{KEY, SECRET, emulator, manager};

/// Every redirect status, pointing at a second IAM that knows the key: none is followed,
/// the sink sees no request, and the error names the status and where it pointed.
#[tokio::test]
async fn a_redirect_from_iam_is_not_followed() {
    let emu = emulator().await;
    let sink = emulator().await;
    for code in [301, 302, 303, 307, 308] {
        emu.push_fault(
            Route::Iam,
            Fault::raw_body(code, "text/plain", "moved").with_header("location", &sink.auth_url()),
        );
        let tokens = manager(&emu);
        let error = tokens.get_token().await.unwrap_err();
        match &error {
            TokenError::Redirected {
                status, location, ..
            } => {
                assert_eq!(status.as_u16(), code);
                assert_eq!(location.as_deref(), Some(sink.origin().as_str()));
            }
            other => panic!("{code}: expected Redirected, got {other:?}"),
        }
        assert_eq!(error.kind(), TokenErrorKind::Redirected);
        assert!(!error.is_transient() && !error.is_auth(), "{error:?}");
        let message = error.to_string();
        for part in [
            &format!("IAM at {}", emu.auth_url()),
            &code.to_string(),
            &format!("redirect to {}", sink.origin()),
            "not followed",
            "check the auth URL",
        ] {
            assert!(message.contains(part), "{part:?} missing: {message}");
        }
        assert!(!message.contains(SECRET), "{message}");
    }
    // One request each, and nothing ever reached the sink.
    assert_eq!(emu.stats().iam_requests, 5);
    let sink_stats = sink.stats();
    assert_eq!(sink_stats.iam_requests, 0);
    assert_eq!(sink_stats.iam_requests_for(KEY), 0);
    assert_eq!(sink_stats.tokens_issued, 0);
}

/// A redirect with no usable `Location` is reported all the same.
#[tokio::test]
async fn a_redirect_without_a_location_is_reported() {
    let emu = emulator().await;
    emu.push_fault(Route::Iam, Fault::raw_body(307, "text/plain", "moved"));
    let error = manager(&emu).get_token().await.unwrap_err();
    assert!(
        matches!(&error, TokenError::Redirected { status, location: None, .. } if status.as_u16() == 307),
        "{error:?}"
    );
    assert!(error.to_string().contains("without a Location"), "{error}");
    assert_eq!(emu.stats().iam_requests, 1);
}

/// A relative `Location` is resolved against the auth URL, so the message names a host.
#[tokio::test]
async fn a_relative_location_names_the_auth_urls_own_origin() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::raw_body(308, "text/plain", "").with_header("location", "/elsewhere?q=1"),
    );
    let error = manager(&emu).get_token().await.unwrap_err();
    match &error {
        TokenError::Redirected { location, .. } => {
            assert_eq!(location.as_deref(), Some(emu.origin().as_str()));
        }
        other => panic!("expected Redirected, got {other:?}"),
    }
    assert!(!error.to_string().contains("q=1"), "{error}");
}

/// A plain-http auth URL to a host other than loopback is a configuration error unless
/// `allow_insecure_http` says it is meant; loopback (the emulator) needs no setting.
#[test]
fn plain_http_to_a_remote_iam_needs_allow_insecure_http() {
    let builder = || {
        TokenManager::builder(Credentials::new(KEY, SECRET))
            .auth_url("http://iam.example.com/token")
    };
    let error = builder().build().unwrap_err();
    match &error {
        TokenError::InvalidConfiguration { setting, message } => {
            assert_eq!(*setting, "auth_url");
            assert!(message.contains("plain http"), "{message}");
            assert!(message.contains("allow_insecure_http"), "{message}");
        }
        other => panic!("expected InvalidConfiguration, got {other:?}"),
    }
    assert!(builder().allow_insecure_http(true).build().is_ok());
    assert!(
        TokenManager::builder(Credentials::new(KEY, SECRET))
            .auth_url("http://127.0.0.1:9/token")
            .build()
            .is_ok()
    );
}
