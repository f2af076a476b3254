//! Rows about where the secret and the token may go, and what the client trusts: redirects
//! are never followed, an untrusted TLS certificate fails at once, IAM's `Retry-After` is
//! honoured, and settings too large for a `Duration` sum are configuration errors.

use std::time::Duration;

use evolution_client::Error;
use evolution_emulator::{DEMO_MODEL, Fault, Route};
use evolution_token::{MAX_FETCH_RETRY_AFTER, TokenError};
use tokio::time::Instant;

use crate::{KEY, SECRET, break_route, builder, client, echo, emulator, says, seen, token_error};

#[path = "../../../token/tests/support/untrusted_tls.rs"]
mod untrusted_tls;

use untrusted_tls::UntrustedTls;

/// IAM answers `308 Location: <another IAM that knows the key>`: the token request (it
/// carries the secret) is not sent there; the call fails with `Redirected` naming the
/// status and the target's origin, and is not retried.
#[tokio::test(start_paused = true)]
async fn iam_redirect_is_not_followed() {
    let emu = emulator().await;
    let sink = emulator().await;
    break_route(
        &emu,
        Route::Iam,
        Fault::raw_body(308, "text/plain", "moved").with_header("location", &sink.auth_url()),
    );
    let llm = client(&emu);

    let error = llm.invoke("hi").await.unwrap_err();
    match token_error(&error) {
        TokenError::Redirected {
            status, location, ..
        } => {
            assert_eq!(status.as_u16(), 308);
            assert_eq!(location.as_deref(), Some(sink.origin().as_str()));
        }
        other => panic!("expected Redirected, got {other:?}"),
    }
    assert!(!error.is_retryable() && !error.is_auth(), "{error:?}");
    says(
        &error.to_string(),
        &[
            &format!("IAM at {}", emu.auth_url()),
            "308 Permanent Redirect",
            &format!("a redirect to {}", sink.origin()),
            "it is not followed",
            "check the auth URL",
        ],
    );
    assert_eq!(seen(&emu), (1, 0));
    assert_eq!(
        seen(&sink),
        (0, 0),
        "the secret went to the redirect's target"
    );
}

/// The API answers `307 Location: <elsewhere>`: the chat request (it carries the token) is
/// not resent there; the call fails with `Error::Api` naming the Location, not retried.
#[tokio::test(start_paused = true)]
async fn api_redirect_is_not_followed() {
    let emu = emulator().await;
    let sink = emulator().await;
    let target = format!("{}/chat/completions", sink.base_url());
    break_route(
        &emu,
        Route::Chat,
        Fault::raw_body(307, "text/plain", "moved").with_header("location", &target),
    );
    let llm = client(&emu);

    let error = llm.invoke("hi").await.unwrap_err();
    match &error {
        Error::Api { status, code, .. } => {
            assert_eq!(status.as_u16(), 307);
            assert_eq!(code.as_deref(), None);
        }
        other => panic!("expected Error::Api, got {other:?}"),
    }
    assert!(!error.is_retryable() && !error.is_auth(), "{error:?}");
    says(
        &error.to_string(),
        &[
            "answered 307 Temporary Redirect",
            &format!("a redirect to {target}"),
            "not followed",
            "check the base URL",
        ],
    );
    assert_eq!(seen(&emu), (1, 1));
    assert_eq!(
        seen(&sink),
        (0, 0),
        "the request went to the redirect's target"
    );
    // Counted as the failure it is, not as a success.
    let stats = llm.stats();
    assert_eq!((stats.total_requests, stats.successes), (1, 0), "{stats:?}");
}

/// IAM over TLS with a certificate from a CA no trust store holds: one handshake, no
/// retry (neither the fetch's nor the client's), and a message about trust, not the network.
#[tokio::test]
async fn iam_untrusted_certificate_fails_at_once() {
    let emu = emulator().await;
    let iam = UntrustedTls::start().await;
    let auth_url = format!("{}/api/v1/auth/token", iam.origin());
    let llm = builder(&emu).auth_url(&auth_url).build().unwrap();

    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(token_error(&error), TokenError::UntrustedCertificate { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable() && !error.is_auth(), "{error:?}");
    says(
        &error.to_string(),
        &[
            &format!("the TLS certificate of IAM at {auth_url} is not trusted"),
            "UnknownIssuer",
            "check the auth URL",
            "SSL_CERT_FILE",
        ],
    );
    assert_eq!(iam.connections(), 1);
    assert_eq!(seen(&emu), (0, 0));
}

/// The API over TLS with an untrusted certificate: the token comes from IAM, then one
/// handshake with the API and no retry, with `Error::UntrustedCertificate`.
#[tokio::test]
async fn api_untrusted_certificate_fails_at_once() {
    let emu = emulator().await;
    let api = UntrustedTls::start().await;
    let llm = builder(&emu)
        .base_url(format!("{}/v1", api.origin()))
        .build()
        .unwrap();

    let error = llm.invoke("hi").await.unwrap_err();
    assert!(
        matches!(error, Error::UntrustedCertificate { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable() && !error.is_auth(), "{error:?}");
    says(
        &error.to_string(),
        &[
            "the TLS certificate of the Evolution API is not trusted",
            "UnknownIssuer",
            "check the base URL",
            "SSL_CERT_FILE",
        ],
    );
    assert_eq!(api.connections(), 1);
    assert_eq!(seen(&emu), (1, 0));
    assert_eq!(llm.stats().retries, 0);
}

/// IAM answers 503 asking for 7 s: the token request waits that long (not its own
/// 100-200 ms backoff) before asking again, and the call succeeds.
#[tokio::test(start_paused = true)]
async fn iam_retry_after_is_honoured() {
    let emu = emulator().await;
    emu.push_fault(
        Route::Iam,
        Fault::status(503).with_header("retry-after", "7"),
    );
    let llm = client(&emu);
    let started = Instant::now();
    assert_eq!(llm.invoke("hi").await.unwrap(), echo(KEY, "hi"));
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(7)..Duration::from_millis(7_100)).contains(&took),
        "{took:?}"
    );
    assert_eq!(seen(&emu), (2, 1));
}

/// IAM asks for longer than a token request waits: each refresh stops after one request
/// with `Throttled` carrying the wait, instead of asking again early into another 503.
/// The retry layer still makes its attempts, one IAM request each.
#[tokio::test(start_paused = true)]
async fn iam_retry_after_above_the_cap_fails_with_the_wait() {
    let emu = emulator().await;
    break_route(
        &emu,
        Route::Iam,
        Fault::status(503).with_header("retry-after", "120"),
    );
    let llm = client(&emu);
    let error = llm.invoke("hi").await.unwrap_err();
    match token_error(&error) {
        TokenError::Throttled {
            status,
            retry_after,
            attempts,
            ..
        } => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(*retry_after, Duration::from_secs(120));
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    says(
        &error.to_string(),
        &[
            &format!("IAM at {}", emu.auth_url()),
            "asked to wait 120s",
            &format!("longer than a token request waits ({MAX_FETCH_RETRY_AFTER:?})"),
            "try again after that",
        ],
    );
    // The fetch stopped at IAM's first answer, and the retry layer does not retry it.
    assert_eq!(seen(&emu), (1, 0));
}

/// `Duration::MAX` as the IAM fetch timeout is a configuration error naming the setting,
/// not a panic or a limit that is none.
#[test]
fn huge_fetch_timeout_is_a_config_error() {
    let error = evolution_client::EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id(KEY)
        .secret(SECRET)
        .base_url("https://foundation-models.api.cloud.ru/v1")
        .fetch_timeout(Duration::MAX)
        .build()
        .unwrap_err();
    match &error {
        Error::Config { field, message } => {
            assert_eq!(*field, "fetch_timeout");
            says(message, &["at most 3600s"]);
        }
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

/// A plain-http base URL to a remote host needs `allow_insecure_http`; the emulator on
/// loopback needs nothing.
#[test]
fn plain_http_to_a_remote_host_is_a_config_error() {
    let error = evolution_client::EvolutionInference::builder()
        .model(DEMO_MODEL)
        .key_id(KEY)
        .secret(SECRET)
        .base_url("http://foundation-models.example.com/v1")
        .build()
        .unwrap_err();
    match &error {
        Error::Config { field, message } => {
            assert_eq!(*field, "base_url");
            says(message, &["plain http", "allow_insecure_http"]);
        }
        other => panic!("expected Error::Config, got {other:?}"),
    }
}
